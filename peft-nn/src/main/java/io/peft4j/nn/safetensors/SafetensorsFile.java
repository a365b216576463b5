package io.peft4j.nn.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A read-only, memory-mapped safetensors file.
 *
 * <p>{@link #open} validates the whole header up front, with the same rules as the Rust reference
 * implementation (sizes, dtypes, shapes, contiguous non-overlapping offsets, exact file size,
 * duplicate keys), so later accessors cannot hit malformed data. The data buffer is mapped in
 * chunks of at most 1 GiB, split only between tensors so every tensor up to 2 GiB is one zero-copy
 * slice; larger tensors are left unmapped and read through the channel ({@link #transferTo}).
 *
 * <p>Instances are safe for concurrent reads. Buffers returned by {@link #bytes} must not be used
 * after {@link #close}.
 */
public final class SafetensorsFile implements AutoCloseable {
  static final long MAX_HEADER_BYTES = 100_000_000L;
  static final long DEFAULT_CHUNK_BYTES = 1L << 30;
  static final long DEFAULT_MAX_MAPPING_BYTES = Integer.MAX_VALUE;
  private static final int STREAM_PIECE_BYTES = 64 << 20;

  static final ObjectMapper JSON = JsonMapper.builder()
      .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
      .build();
  // Reads one value out of a streaming parser; trailing-token checks would fire on the next key.
  private static final ObjectMapper ENTRY_READER = JsonMapper.builder()
      .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)
      .build();

  private final Path path;
  private final String label;
  private final long dataStart;
  private final Map<String, String> metadata;
  private final Map<String, TensorInfo> tensors;
  private final int mappingCount;
  private final long streamPieceBytes;
  private volatile FileChannel channel;
  // name -> zero-copy slice; absent for tensors too large to map as one buffer.
  private volatile Map<String, ByteBuffer> slices;

  private SafetensorsFile(Path path, String label, FileChannel channel, long dataStart,
      Map<String, String> metadata, Map<String, TensorInfo> tensors, Map<String, ByteBuffer> slices,
      int mappingCount, long streamPieceBytes) {
    this.path = path;
    this.label = label;
    this.channel = channel;
    this.dataStart = dataStart;
    this.metadata = metadata;
    this.tensors = tensors;
    this.slices = slices;
    this.mappingCount = mappingCount;
    this.streamPieceBytes = streamPieceBytes;
  }

  /** Opens, validates and memory-maps {@code file}. */
  public static SafetensorsFile open(Path file) throws IOException {
    return open(file, DEFAULT_CHUNK_BYTES, DEFAULT_MAX_MAPPING_BYTES);
  }

  /**
   * Test seam: {@code chunkBytes} bounds how much of the data buffer one mapping covers (unless a
   * single tensor is larger), and tensors larger than {@code maxMappingBytes} are not mapped.
   */
  static SafetensorsFile open(Path file, long chunkBytes, long maxMappingBytes) throws IOException {
    String label = file.toString();
    FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
    boolean ok = false;
    try {
      SafetensorsFile f = parse(file, label, ch, chunkBytes, maxMappingBytes);
      ok = true;
      return f;
    } finally {
      if (!ok) {
        ch.close();
      }
    }
  }

  private static SafetensorsFile parse(Path file, String label, FileChannel ch, long chunkBytes,
      long maxMappingBytes) throws IOException {
    long fileSize = ch.size();
    if (fileSize < 8) {
      throw new SafetensorsException(label + ": file is " + fileSize
          + " bytes, too small for the 8-byte header length");
    }
    ByteBuffer lenBuf = readFully(ch, 0, 8).order(ByteOrder.LITTLE_ENDIAN);
    long n = lenBuf.getLong(0);
    if (n < 0 || n > MAX_HEADER_BYTES) {
      throw new SafetensorsException(label + ": header length " + Long.toUnsignedString(n)
          + " exceeds the maximum of " + MAX_HEADER_BYTES + " bytes");
    }
    if (8 + n > fileSize) {
      throw new SafetensorsException(label + ": header length " + n + " exceeds file size " + fileSize);
    }
    ByteBuffer headerBytes = readFully(ch, 8, (int) n);
    String header;
    try {
      header = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(headerBytes)
          .toString();
    } catch (CharacterCodingException e) {
      throw new SafetensorsException(label + ": header is not valid UTF-8", e);
    }

    Map<String, String> metadata = new LinkedHashMap<>();
    Map<String, TensorInfo> tensors = new LinkedHashMap<>();
    parseHeader(label, header, metadata, tensors);

    long dataStart = 8 + n;
    long dataLen = fileSize - dataStart;
    List<TensorInfo> sorted = new ArrayList<>(tensors.values());
    sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    long expected = 0;
    TensorInfo prev = null;
    for (TensorInfo t : sorted) {
      if (t.begin() < expected) {
        throw new SafetensorsException(label + ": tensor '" + t.name() + "' data_offsets ["
            + t.begin() + ", " + t.end() + "] overlap tensor '" + prev.name() + "' data_offsets ["
            + prev.begin() + ", " + prev.end() + "]");
      }
      if (t.begin() > expected) {
        throw new SafetensorsException(label + ": gap in data buffer: bytes [" + expected + ", "
            + t.begin() + ") before tensor '" + t.name() + "' belong to no tensor");
      }
      expected = t.end();
      prev = t;
    }
    if (expected > dataLen) {
      throw new SafetensorsException(label + ": file is truncated: tensors end at data offset "
          + expected + (prev != null ? " (tensor '" + prev.name() + "')" : "")
          + " but the data buffer has only " + dataLen + " bytes (file size " + fileSize + ")");
    }
    if (expected < dataLen) {
      throw new SafetensorsException(label + ": " + (dataLen - expected)
          + " trailing bytes after the last tensor (data buffer is " + dataLen
          + " bytes, tensors end at " + expected + ", file size " + fileSize + ")");
    }

    Map<String, ByteBuffer> slices = new HashMap<>();
    int mappings = mapSegments(ch, dataStart, sorted, chunkBytes, maxMappingBytes, slices);
    long piece = Math.max(8, Math.min(STREAM_PIECE_BYTES, chunkBytes) / 8 * 8);
    return new SafetensorsFile(file, label, ch, dataStart, Collections.unmodifiableMap(metadata),
        Collections.unmodifiableMap(tensors), slices, mappings, piece);
  }

  private static void parseHeader(String label, String header, Map<String, String> metadata,
      Map<String, TensorInfo> tensors) throws SafetensorsException {
    // Syntax first, semantics second: a structurally broken header should be reported as such,
    // not as whatever semantic check happens to run before the parser reaches the damage.
    List<Map.Entry<String, JsonNode>> entries = new ArrayList<>();
    try (JsonParser p = JSON.createParser(header)) {
      if (p.nextToken() != JsonToken.START_OBJECT) {
        throw new SafetensorsException(label + ": header is not a JSON object");
      }
      java.util.Set<String> seen = new java.util.HashSet<>();
      for (JsonToken tok = p.nextToken(); tok != JsonToken.END_OBJECT; tok = p.nextToken()) {
        String key = p.currentName();
        p.nextToken();
        JsonNode value = ENTRY_READER.readTree(p);
        if (!seen.add(key)) {
          throw new SafetensorsException(label + ": header has duplicate "
              + ("__metadata__".equals(key) ? "key '" : "tensor name '") + key + "'");
        }
        entries.add(Map.entry(key, value == null ? com.fasterxml.jackson.databind.node.NullNode.getInstance() : value));
      }
      if (p.nextToken() != null) {
        throw new SafetensorsException(label + ": header has trailing content after the JSON object");
      }
    } catch (SafetensorsException e) {
      throw e;
    } catch (IOException e) {
      String detail = e instanceof com.fasterxml.jackson.core.JacksonException
          ? ((com.fasterxml.jackson.core.JacksonException) e).getOriginalMessage() : e.getMessage();
      throw new SafetensorsException(label + ": header is not valid JSON: " + detail, e);
    }
    for (Map.Entry<String, JsonNode> e : entries) {
      if ("__metadata__".equals(e.getKey())) {
        parseMetadata(label, e.getValue(), metadata);
      } else {
        tensors.put(e.getKey(), parseTensor(label, e.getKey(), e.getValue()));
      }
    }
  }

  private static void parseMetadata(String label, JsonNode value, Map<String, String> out)
      throws SafetensorsException {
    if (value == null || value.isNull()) {
      return;
    }
    if (!value.isObject()) {
      throw new SafetensorsException(label + ": __metadata__ is not a JSON object");
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = value.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!e.getValue().isTextual()) {
        throw new SafetensorsException(label + ": __metadata__ value for key '" + e.getKey()
            + "' is not a string: " + e.getValue());
      }
      out.put(e.getKey(), e.getValue().textValue());
    }
  }

  private static TensorInfo parseTensor(String label, String name, JsonNode v)
      throws SafetensorsException {
    String where = label + ": tensor '" + name + "'";
    if (v == null || !v.isObject()) {
      throw new SafetensorsException(where + ": header entry is not a JSON object");
    }
    JsonNode dt = v.get("dtype");
    if (dt == null || !dt.isTextual()) {
      throw new SafetensorsException(where + ": missing or non-string 'dtype'");
    }
    DType dtype;
    try {
      dtype = DType.fromSafetensorsName(dt.textValue());
    } catch (SafetensorsException e) {
      throw new SafetensorsException(where + " has unknown or unsupported dtype '" + dt.textValue() + "'");
    }
    JsonNode sh = v.get("shape");
    if (sh == null || !sh.isArray()) {
      throw new SafetensorsException(where + ": missing or non-array 'shape'");
    }
    long[] shape = new long[sh.size()];
    for (int i = 0; i < shape.length; i++) {
      JsonNode d = sh.get(i);
      if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
        throw new SafetensorsException(where + ": shape " + sh + " has an invalid dimension " + d
            + " (dimensions must be non-negative integers)");
      }
      shape[i] = d.longValue();
    }
    JsonNode off = v.get("data_offsets");
    if (off == null || !off.isArray() || off.size() != 2) {
      throw new SafetensorsException(where + ": 'data_offsets' must be an array [begin, end], got " + off);
    }
    long[] be = new long[2];
    for (int i = 0; i < 2; i++) {
      JsonNode o = off.get(i);
      if (!o.isIntegralNumber() || !o.canConvertToLong() || o.longValue() < 0) {
        throw new SafetensorsException(where + ": data_offsets " + off
            + " must be two non-negative integers");
      }
      be[i] = o.longValue();
    }
    if (be[0] > be[1]) {
      throw new SafetensorsException(where + ": data_offsets [" + be[0] + ", " + be[1]
          + "] have begin > end");
    }
    long bytes;
    try {
      bytes = Math.multiplyExact(Shapes.numel(shape), (long) dtype.byteSize());
    } catch (ArithmeticException e) {
      throw new SafetensorsException(where + ": shape " + Arrays.toString(shape) + " overflows 64 bits");
    }
    if (be[1] - be[0] != bytes) {
      throw new SafetensorsException(where + " has dtype " + dtype.safetensorsName() + " and shape "
          + Arrays.toString(shape) + " (" + bytes + " bytes) but data_offsets [" + be[0] + ", "
          + be[1] + "] span " + (be[1] - be[0]) + " bytes: byte count does not match shape");
    }
    return new TensorInfo(name, dtype, shape, be[0], be[1]);
  }

  private static int mapSegments(FileChannel ch, long dataStart, List<TensorInfo> sorted,
      long chunkBytes, long maxMappingBytes, Map<String, ByteBuffer> slices) throws IOException {
    int mappings = 0;
    List<TensorInfo> members = new ArrayList<>();
    long segStart = -1;
    long segEnd = -1;
    for (TensorInfo t : sorted) {
      if (t.byteSize() > maxMappingBytes) {
        mappings += flush(ch, dataStart, segStart, segEnd, members, slices);
        segStart = -1;
        continue;
      }
      if (segStart >= 0 && t.end() - segStart <= chunkBytes) {
        segEnd = t.end();
        members.add(t);
      } else {
        mappings += flush(ch, dataStart, segStart, segEnd, members, slices);
        segStart = t.begin();
        segEnd = t.end();
        members.add(t);
      }
    }
    mappings += flush(ch, dataStart, segStart, segEnd, members, slices);
    return mappings;
  }

  private static int flush(FileChannel ch, long dataStart, long segStart, long segEnd,
      List<TensorInfo> members, Map<String, ByteBuffer> slices) throws IOException {
    if (members.isEmpty()) {
      return 0;
    }
    long size = segEnd - segStart;
    ByteBuffer seg = size == 0 ? ByteBuffer.allocate(0).asReadOnlyBuffer()
        : ch.map(FileChannel.MapMode.READ_ONLY, dataStart + segStart, size);
    for (TensorInfo t : members) {
      ByteBuffer s = seg.slice((int) (t.begin() - segStart), (int) t.byteSize());
      slices.put(t.name(), s);
    }
    members.clear();
    return size == 0 ? 0 : 1;
  }

  private static ByteBuffer readFully(FileChannel ch, long pos, int len) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(len);
    while (b.hasRemaining()) {
      int r = ch.read(b, pos + b.position());
      if (r < 0) {
        throw new IOException("unexpected end of file at " + (pos + b.position()));
      }
    }
    b.flip();
    return b;
  }

  /** The path this file was opened from. */
  public Path path() {
    return path;
  }

  /** The {@code __metadata__} entries in header order (empty if absent). */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** Tensor names in header order. */
  public List<String> names() {
    return List.copyOf(tensors.keySet());
  }

  public boolean contains(String name) {
    return tensors.containsKey(name);
  }

  /** Header info of a tensor. @throws IllegalArgumentException if there is no such tensor */
  public TensorInfo info(String name) {
    TensorInfo t = tensors.get(name);
    if (t == null) {
      throw new IllegalArgumentException(label + ": no tensor named '" + name + "'");
    }
    return t;
  }

  /** All tensor infos in header order. */
  public List<TensorInfo> infos() {
    return List.copyOf(tensors.values());
  }

  /**
   * The tensor's bytes as a read-only little-endian slice of the mapping (no copy).
   *
   * @throws IllegalArgumentException if the tensor is unknown or larger than 2 GiB (use {@link
   *     #transferTo})
   */
  public ByteBuffer bytes(String name) {
    TensorInfo t = info(name);
    ByteBuffer s = openSlices().get(name);
    if (s == null) {
      throw new IllegalArgumentException(label + ": tensor '" + name + "' is " + t.byteSize()
          + " bytes, too large for a single ByteBuffer; stream it with transferTo");
    }
    return s.duplicate().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** Writes the tensor's raw bytes to {@code out}; works for tensors of any size. */
  public void transferTo(String name, WritableByteChannel out) throws IOException {
    TensorInfo t = info(name);
    ByteBuffer s = openSlices().get(name);
    if (s != null) {
      ByteBuffer b = s.duplicate();
      while (b.hasRemaining()) {
        out.write(b);
      }
      return;
    }
    long pos = dataStart + t.begin();
    long end = dataStart + t.end();
    FileChannel ch = openChannel();
    while (pos < end) {
      long n = ch.transferTo(pos, end - pos, out);
      if (n <= 0) {
        // transferTo may legitimately return 0 for some targets; fall back to a plain copy.
        ByteBuffer piece = readFully(ch, pos, (int) Math.min(streamPieceBytes, end - pos));
        while (piece.hasRemaining()) {
          out.write(piece);
        }
        n = piece.limit();
      }
      pos += n;
    }
  }

  /** The elements as floats: F16/BF16/integers widened, F64 narrowed like {@code (float) x}. */
  public float[] toFloatArray(String name) {
    TensorInfo t = info(name);
    int n = arrayLength(t);
    float[] out = new float[n];
    DType dt = t.dtype();
    forEachPiece(t, (piece, first, count) -> {
      if (dt == DType.F32) {
        piece.asFloatBuffer().get(out, first, count);
      } else {
        for (int i = 0; i < count; i++) {
          out[first + i] = Elements.getFloat(piece, dt, i);
        }
      }
    });
    return out;
  }

  /** The elements of an integer or BOOL tensor as longs (U8 zero-extended, BOOL as 0/1). */
  public long[] toLongArray(String name) {
    TensorInfo t = info(name);
    DType dt = t.dtype();
    if (dt.isFloating()) {
      throw new IllegalArgumentException(label + ": tensor '" + name + "' has floating dtype "
          + dt.safetensorsName() + "; use toFloatArray");
    }
    long[] out = new long[arrayLength(t)];
    forEachPiece(t, (piece, first, count) -> {
      for (int i = 0; i < count; i++) {
        out[first + i] = Elements.getLong(piece, dt, i);
      }
    });
    return out;
  }

  /**
   * Copies the tensor into a new NDArray owned by {@code manager} with type {@link DType#djlType()}:
   * F16/BF16 become FLOAT32 and I16 becomes INT32 (the engine aborts on those types), everything
   * else keeps its type. The mapping itself is never handed
   * to the engine, since PyTorch would alias it and outlive {@link #close}.
   */
  public NDArray toNDArray(String name, NDManager manager) {
    TensorInfo t = info(name);
    Shape shape = new Shape(t.shape());
    DType dt = t.dtype();
    if (dt == DType.F16 || dt == DType.BF16) {
      return manager.create(toFloatArray(name), shape);
    }
    if (dt == DType.I16) {
      long[] v = toLongArray(name);
      int[] w = new int[v.length];
      for (int i = 0; i < v.length; i++) {
        w[i] = (int) v[i];
      }
      return manager.create(w, shape);
    }
    if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
      throw new UnsupportedOperationException("big-endian platforms are not supported");
    }
    if (t.byteSize() > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException(label + ": tensor '" + name + "' is " + t.byteSize()
          + " bytes, too large for one NDArray buffer");
    }
    ByteBuffer direct = manager.allocateDirect((int) t.byteSize());
    forEachPiece(t, (piece, first, count) -> direct.put(piece));
    direct.rewind();
    return manager.create(direct, shape, dt.djlType());
  }

  private int arrayLength(TensorInfo t) {
    if (t.numel() > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException(label + ": tensor '" + t.name() + "' has " + t.numel()
          + " elements, too many for a Java array");
    }
    return (int) t.numel();
  }

  @FunctionalInterface
  private interface PieceConsumer {
    /** {@code piece} is little-endian, positioned at 0, holding {@code count} whole elements. */
    void accept(ByteBuffer piece, int firstElement, int count);
  }

  private void forEachPiece(TensorInfo t, PieceConsumer c) {
    int es = t.dtype().byteSize();
    ByteBuffer s = openSlices().get(t.name());
    if (s != null) {
      c.accept(s.duplicate().order(ByteOrder.LITTLE_ENDIAN), 0, (int) (t.byteSize() / es));
      return;
    }
    long pieceBytes = streamPieceBytes / es * es;
    FileChannel ch = openChannel();
    long done = 0;
    try {
      while (done < t.byteSize()) {
        int len = (int) Math.min(pieceBytes, t.byteSize() - done);
        ByteBuffer piece = readFully(ch, dataStart + t.begin() + done, len).order(ByteOrder.LITTLE_ENDIAN);
        c.accept(piece, (int) (done / es), len / es);
        done += len;
      }
    } catch (IOException e) {
      throw new UncheckedIOException(label + ": reading tensor '" + t.name() + "' failed", e);
    }
  }

  private Map<String, ByteBuffer> openSlices() {
    Map<String, ByteBuffer> s = slices;
    if (s == null) {
      throw new IllegalStateException(label + ": file is closed");
    }
    return s;
  }

  private FileChannel openChannel() {
    FileChannel ch = channel;
    if (ch == null) {
      throw new IllegalStateException(label + ": file is closed");
    }
    return ch;
  }

  /** Number of memory mappings backing the data buffer (for tests of the chunking). */
  int mappingCount() {
    return mappingCount;
  }

  /** Drops the mappings (they are unmapped once garbage collected) and closes the channel. */
  @Override
  public void close() throws IOException {
    slices = null;
    FileChannel ch = channel;
    channel = null;
    if (ch != null) {
      ch.close();
    }
  }

  @Override
  public String toString() {
    return "SafetensorsFile{" + label + ", " + tensors.size() + " tensors}";
  }
}
