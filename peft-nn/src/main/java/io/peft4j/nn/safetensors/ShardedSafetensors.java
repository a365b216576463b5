package io.peft4j.nn.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * A model stored as one safetensors file or as Hugging Face shards ({@code
 * model-00001-of-00002.safetensors} ... plus {@code model.safetensors.index.json}), read as one
 * tensor namespace.
 */
public final class ShardedSafetensors implements AutoCloseable {
  public static final String SINGLE_FILE = "model.safetensors";
  public static final String INDEX_FILE = "model.safetensors.index.json";
  private static final Pattern SHARD_NAME = Pattern.compile("model-\\d{5}-of-\\d{5}\\.safetensors");

  private final Path source;
  private final Map<String, String> metadata;
  private final Map<String, SafetensorsFile> shardOf;
  private final List<SafetensorsFile> shards;

  private ShardedSafetensors(Path source, Map<String, String> metadata,
      Map<String, SafetensorsFile> shardOf, List<SafetensorsFile> shards) {
    this.source = source;
    this.metadata = metadata;
    this.shardOf = shardOf;
    this.shards = shards;
  }

  /**
   * Opens a directory (its index if present, else {@code model.safetensors}), an index {@code
   * .json} file, or a single {@code .safetensors} file. Every shard is opened and validated once.
   */
  public static ShardedSafetensors open(Path dirOrFile) throws IOException {
    if (Files.isDirectory(dirOrFile)) {
      Path index = dirOrFile.resolve(INDEX_FILE);
      if (Files.isRegularFile(index)) {
        return openIndex(index);
      }
      Path single = dirOrFile.resolve(SINGLE_FILE);
      if (Files.isRegularFile(single)) {
        return openSingle(single);
      }
      throw new SafetensorsException(dirOrFile + ": directory has neither " + INDEX_FILE + " nor "
          + SINGLE_FILE);
    }
    if (dirOrFile.getFileName() != null && dirOrFile.getFileName().toString().endsWith(".json")) {
      return openIndex(dirOrFile);
    }
    return openSingle(dirOrFile);
  }

  private static ShardedSafetensors openSingle(Path file) throws IOException {
    SafetensorsFile f = SafetensorsFile.open(file);
    Map<String, SafetensorsFile> shardOf = new LinkedHashMap<>();
    for (String n : f.names()) {
      shardOf.put(n, f);
    }
    return new ShardedSafetensors(file, f.metadata(), shardOf, List.of(f));
  }

  private static ShardedSafetensors openIndex(Path index) throws IOException {
    String label = index.toString();
    JsonNode root;
    try {
      root = SafetensorsFile.JSON.readTree(Files.readAllBytes(index));
    } catch (IOException e) {
      if (e instanceof java.nio.file.NoSuchFileException) {
        throw new SafetensorsException(label + ": index file not found", e);
      }
      throw new SafetensorsException(label + ": index is not valid JSON: " + e.getMessage(), e);
    }
    if (root == null || !root.isObject() || !root.path("weight_map").isObject()) {
      throw new SafetensorsException(label + ": index has no 'weight_map' object");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    JsonNode meta = root.get("metadata");
    if (meta != null && meta.isObject()) {
      for (Iterator<Map.Entry<String, JsonNode>> it = meta.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        metadata.put(e.getKey(), e.getValue().isValueNode() ? e.getValue().asText() : e.getValue().toString());
      }
    }
    Path dir = index.toAbsolutePath().getParent();
    Map<String, SafetensorsFile> byShardName = new LinkedHashMap<>();
    Map<String, SafetensorsFile> shardOf = new LinkedHashMap<>();
    boolean ok = false;
    try {
      for (Iterator<Map.Entry<String, JsonNode>> it = root.get("weight_map").fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String tensor = e.getKey();
        if (!e.getValue().isTextual()) {
          throw new SafetensorsException(label + ": weight_map entry for tensor '" + tensor
              + "' is not a file name string");
        }
        String shardName = e.getValue().textValue();
        SafetensorsFile shard = byShardName.get(shardName);
        if (shard == null) {
          Path shardPath = dir.resolve(shardName);
          if (!Files.isRegularFile(shardPath)) {
            throw new SafetensorsException(label + ": shard '" + shardName + "' (for tensor '" + tensor
                + "') does not exist at " + shardPath);
          }
          shard = SafetensorsFile.open(shardPath);
          byShardName.put(shardName, shard);
        }
        if (!shard.contains(tensor)) {
          throw new SafetensorsException(label + ": tensor '" + tensor + "' is mapped to shard '"
              + shardName + "' but that shard does not contain it");
        }
        shardOf.put(tensor, shard);
      }
      // Tensors a shard holds beyond the weight map are still loaded by transformers, so keep them,
      // but a name present in two shards is ambiguous.
      for (Map.Entry<String, SafetensorsFile> s : byShardName.entrySet()) {
        for (String tensor : s.getValue().names()) {
          SafetensorsFile owner = shardOf.get(tensor);
          if (owner == null) {
            shardOf.put(tensor, s.getValue());
          } else if (owner != s.getValue()) {
            throw new SafetensorsException(label + ": tensor '" + tensor + "' appears in two shards: '"
                + owner.path().getFileName() + "' and '" + s.getKey() + "'");
          }
        }
      }
      ok = true;
    } finally {
      if (!ok) {
        for (SafetensorsFile f : byShardName.values()) {
          f.close();
        }
      }
    }
    return new ShardedSafetensors(index, Collections.unmodifiableMap(metadata),
        Collections.unmodifiableMap(shardOf), List.copyOf(byShardName.values()));
  }

  /** The index file or single file this was opened from. */
  public Path source() {
    return source;
  }

  /** The index's {@code metadata} (values as text), or the single file's {@code __metadata__}. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** Tensor names: weight-map order (then any unlisted shard tensors), or header order. */
  public List<String> names() {
    return List.copyOf(shardOf.keySet());
  }

  public boolean contains(String name) {
    return shardOf.containsKey(name);
  }

  /** The opened shard that holds {@code name}. @throws IllegalArgumentException if absent */
  public SafetensorsFile shardOf(String name) {
    SafetensorsFile f = shardOf.get(name);
    if (f == null) {
      throw new IllegalArgumentException(source + ": no tensor named '" + name + "'");
    }
    return f;
  }

  /** The opened shards, in first-use order. */
  public List<SafetensorsFile> shards() {
    return shards;
  }

  public TensorInfo info(String name) {
    return shardOf(name).info(name);
  }

  public ByteBuffer bytes(String name) {
    return shardOf(name).bytes(name);
  }

  public float[] toFloatArray(String name) {
    return shardOf(name).toFloatArray(name);
  }

  public NDArray toNDArray(String name, NDManager manager) {
    return shardOf(name).toNDArray(name, manager);
  }

  @Override
  public void close() throws IOException {
    IOException first = null;
    for (SafetensorsFile f : shards) {
      try {
        f.close();
      } catch (IOException e) {
        first = first == null ? e : first;
      }
    }
    if (first != null) {
      throw first;
    }
  }

  /**
   * Writes {@code tensors} into {@code dir}: a single {@code model.safetensors} if the total byte
   * size is at most {@code maxShardBytes}, otherwise {@code model-0000K-of-0000N.safetensors}
   * shards (filled greedily in map order; a tensor larger than the limit gets a shard of its own)
   * plus {@code model.safetensors.index.json} with {@code metadata.total_size}. {@code metadata}
   * goes into every file's {@code __metadata__}. The index is written last and leftover files of a
   * previous layout are removed afterwards, so the directory never points at missing data.
   */
  public static void writeSharded(Path dir, Map<String, TensorData> tensors,
      Map<String, String> metadata, long maxShardBytes) throws IOException {
    if (maxShardBytes <= 0) {
      throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
    }
    Files.createDirectories(dir);
    List<Map<String, TensorData>> groups = new ArrayList<>();
    Map<String, TensorData> current = new LinkedHashMap<>();
    long currentBytes = 0;
    long total = 0;
    for (Map.Entry<String, TensorData> e : tensors.entrySet()) {
      long size = e.getValue() == null ? 0 : e.getValue().byteSize();
      total += size;
      if (!current.isEmpty() && currentBytes + size > maxShardBytes) {
        groups.add(current);
        current = new LinkedHashMap<>();
        currentBytes = 0;
      }
      current.put(e.getKey(), e.getValue());
      currentBytes += size;
    }
    groups.add(current);

    Set<String> written = new HashSet<>();
    if (groups.size() == 1) {
      SafetensorsWriter.write(dir.resolve(SINGLE_FILE), groups.get(0), metadata);
      written.add(SINGLE_FILE);
    } else {
      Map<String, String> weightMap = new TreeMap<>();
      int n = groups.size();
      for (int i = 0; i < n; i++) {
        String name = String.format("model-%05d-of-%05d.safetensors", i + 1, n);
        SafetensorsWriter.write(dir.resolve(name), groups.get(i), metadata);
        written.add(name);
        for (String t : groups.get(i).keySet()) {
          weightMap.put(t, name);
        }
      }
      byte[] index = indexJson(total, weightMap);
      SafetensorsWriter.writeAtomically(dir.resolve(INDEX_FILE),
          ch -> SafetensorsWriter.writeFully(ch, ByteBuffer.wrap(index)));
      written.add(INDEX_FILE);
    }
    removeStale(dir, written);
  }

  private static void removeStale(Path dir, Set<String> keep) throws IOException {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) {
        String name = p.getFileName().toString();
        boolean ours = name.equals(SINGLE_FILE) || name.equals(INDEX_FILE)
            || SHARD_NAME.matcher(name).matches();
        if (ours && !keep.contains(name)) {
          Files.deleteIfExists(p);
        }
      }
    }
  }

  /** Index JSON laid out like Python's {@code json.dumps(index, indent=2, sort_keys=True)}. */
  private static byte[] indexJson(long totalSize, Map<String, String> sortedWeightMap) {
    StringBuilder sb = new StringBuilder();
    sb.append("{\n  \"metadata\": {\n    \"total_size\": ").append(totalSize).append("\n  },\n");
    sb.append("  \"weight_map\": {");
    boolean first = true;
    for (Map.Entry<String, String> e : sortedWeightMap.entrySet()) {
      sb.append(first ? "\n    " : ",\n    ");
      first = false;
      SafetensorsWriter.appendJsonString(sb, e.getKey()).append(": ");
      SafetensorsWriter.appendJsonString(sb, e.getValue());
    }
    sb.append(first ? "}\n}\n" : "\n  }\n}\n");
    return sb.toString().getBytes(StandardCharsets.UTF_8);
  }
}
