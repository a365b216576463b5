package io.peft4j.nn.safetensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Writes safetensors files byte-for-byte like the Rust reference writer (and hence Python {@code
 * safetensors.torch.save_file}): tensors ordered by dtype (descending Rust enum order) then by
 * name, compact JSON header with {@code __metadata__} first, space padding to a multiple of 8.
 *
 * <p>Writes are atomic: data goes to a hidden temp file in the target directory, is fsynced, and
 * is then renamed over the target, so a crash or error never leaves a half-written model.
 */
public final class SafetensorsWriter {
  private static final SecureRandom RANDOM = new SecureRandom();

  private SafetensorsWriter() {}

  /** Test seam for fault injection: called after each tensor's bytes were written. */
  @FunctionalInterface
  interface Hook {
    void afterTensor(String name) throws IOException;
  }

  @FunctionalInterface
  interface ChannelWriter {
    void write(FileChannel channel) throws IOException;
  }

  /**
   * Writes {@code tensors} (any iteration order; the file order is canonical) with optional
   * {@code metadata} (omitted from the header when null or empty) to {@code file}, atomically.
   */
  public static void write(Path file, Map<String, TensorData> tensors, Map<String, String> metadata)
      throws IOException {
    write(file, tensors, metadata, null);
  }

  static void write(Path file, Map<String, TensorData> tensors, Map<String, String> metadata,
      Hook hook) throws IOException {
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(tensors, "tensors");
    String label = file.toString();
    List<Entry> entries = order(label, tensors);
    byte[] header = header(label, entries, metadata);
    writeAtomically(file, ch -> {
      writeFully(ch, ByteBuffer.wrap(header));
      for (Entry e : entries) {
        writeFully(ch, e.data.bytes());
        if (hook != null) {
          hook.afterTensor(e.name);
        }
      }
    });
  }

  private static final class Entry {
    final String name;
    final byte[] nameUtf8;
    final TensorData data;

    Entry(String name, TensorData data) {
      this.name = name;
      this.nameUtf8 = name.getBytes(StandardCharsets.UTF_8);
      this.data = data;
    }
  }

  private static List<Entry> order(String label, Map<String, TensorData> tensors)
      throws SafetensorsException {
    List<Entry> entries = new ArrayList<>(tensors.size());
    for (Map.Entry<String, TensorData> e : tensors.entrySet()) {
      if (e.getKey() == null) {
        throw new SafetensorsException(label + ": tensor name must not be null");
      }
      if (e.getKey().equals("__metadata__")) {
        throw new SafetensorsException(label + ": '__metadata__' is reserved and cannot be a tensor name");
      }
      if (e.getValue() == null) {
        throw new SafetensorsException(label + ": tensor '" + e.getKey() + "' has no data (null)");
      }
      entries.add(new Entry(e.getKey(), e.getValue()));
    }
    // Rust sorts by (dtype descending, name ascending); names compare as UTF-8 bytes, not UTF-16.
    entries.sort((a, b) -> {
      int c = Integer.compare(b.data.dtype().rustOrder(), a.data.dtype().rustOrder());
      return c != 0 ? c : Arrays.compareUnsigned(a.nameUtf8, b.nameUtf8);
    });
    return entries;
  }

  /** The 8-byte length prefix followed by the padded header. */
  private static byte[] header(String label, List<Entry> entries, Map<String, String> metadata)
      throws SafetensorsException {
    StringBuilder sb = new StringBuilder("{");
    boolean first = true;
    if (metadata != null && !metadata.isEmpty()) {
      sb.append("\"__metadata__\":{");
      boolean firstMeta = true;
      for (Map.Entry<String, String> m : metadata.entrySet()) {
        if (m.getKey() == null || m.getValue() == null) {
          throw new SafetensorsException(label + ": metadata keys and values must not be null (key '"
              + m.getKey() + "')");
        }
        if (!firstMeta) {
          sb.append(',');
        }
        firstMeta = false;
        appendJsonString(sb, m.getKey()).append(':');
        appendJsonString(sb, m.getValue());
      }
      sb.append('}');
      first = false;
    }
    long offset = 0;
    for (Entry e : entries) {
      if (!first) {
        sb.append(',');
      }
      first = false;
      long end = offset + e.data.byteSize();
      appendJsonString(sb, e.name).append(":{\"dtype\":\"").append(e.data.dtype().safetensorsName())
          .append("\",\"shape\":[");
      long[] shape = e.data.shape();
      for (int i = 0; i < shape.length; i++) {
        if (i > 0) {
          sb.append(',');
        }
        sb.append(shape[i]);
      }
      sb.append("],\"data_offsets\":[").append(offset).append(',').append(end).append("]}");
      offset = end;
    }
    sb.append('}');
    byte[] json = sb.toString().getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) / 8 * 8;
    if (padded > SafetensorsFile.MAX_HEADER_BYTES) {
      throw new SafetensorsException(label + ": header would be " + padded + " bytes, over the "
          + SafetensorsFile.MAX_HEADER_BYTES + " byte limit readers enforce");
    }
    ByteBuffer b = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(padded).put(json);
    while (b.hasRemaining()) {
      b.put((byte) ' ');
    }
    return b.array();
  }

  /** JSON string escaping as serde_json does it: only quote, backslash and control characters. */
  static StringBuilder appendJsonString(StringBuilder sb, String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"':
          sb.append("\\\"");
          break;
        case '\\':
          sb.append("\\\\");
          break;
        case '\b':
          sb.append("\\b");
          break;
        case '\f':
          sb.append("\\f");
          break;
        case '\n':
          sb.append("\\n");
          break;
        case '\r':
          sb.append("\\r");
          break;
        case '\t':
          sb.append("\\t");
          break;
        default:
          if (c < 0x20) {
            sb.append(String.format("\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
      }
    }
    return sb.append('"');
  }

  static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
    while (b.hasRemaining()) {
      ch.write(b);
    }
  }

  /**
   * Runs {@code body} against a fresh temp file next to {@code file}, fsyncs it and renames it over
   * {@code file}. On any failure the temp file is deleted and an existing {@code file} is untouched.
   */
  static void writeAtomically(Path file, ChannelWriter body) throws IOException {
    Path target = file.toAbsolutePath();
    Path dir = target.getParent();
    String label = file.toString();
    byte[] rnd = new byte[6];
    RANDOM.nextBytes(rnd);
    StringBuilder hex = new StringBuilder();
    for (byte x : rnd) {
      hex.append(String.format("%02x", x & 0xFF));
    }
    Path tmp = dir.resolve("." + target.getFileName() + ".tmp-" + hex);
    boolean done = false;
    try {
      try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW,
          StandardOpenOption.WRITE)) {
        body.write(ch);
        ch.force(true);
      }
      try {
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
      }
      done = true;
    } catch (SafetensorsException e) {
      throw e;
    } catch (IOException e) {
      throw new SafetensorsException(label + ": write failed: " + e, e);
    } finally {
      if (!done) {
        try {
          Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
          // Best effort; the original failure is what matters to the caller.
        }
      }
    }
    // Make the rename itself durable; not every platform can open a directory, hence best effort.
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    } catch (IOException | UnsupportedOperationException ignored) {
      // The file content is already durable; only the directory entry might be lost on power loss.
    }
  }
}
