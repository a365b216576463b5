package io.peft4j.nn.safetensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Builds safetensors files byte by byte, independent of the writer under test. */
final class RawFiles {
  private RawFiles() {}

  /** 8-byte LE length + header (space padded to a multiple of 8) + data. */
  static byte[] build(String header, byte[] data) {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    int padded = (h.length + 7) / 8 * 8;
    return buildRaw(padded, h, padded - h.length, data);
  }

  /** Full control: declared header length, header bytes, number of pad spaces, data. */
  static byte[] buildRaw(long declaredLength, byte[] header, int pad, byte[] data) {
    ByteBuffer b = ByteBuffer.allocate(8 + header.length + pad + data.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(declaredLength).put(header);
    for (int i = 0; i < pad; i++) {
      b.put((byte) ' ');
    }
    b.put(data);
    return b.array();
  }

  static Path write(Path dir, String name, byte[] bytes) throws IOException {
    Path p = dir.resolve(name);
    Files.write(p, bytes);
    return p;
  }

  static byte[] floatsLE(float... v) {
    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float f : v) {
      b.putFloat(f);
    }
    return b.array();
  }

  static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] out = new byte[n];
    int o = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, out, o, p.length);
      o += p.length;
    }
    return out;
  }
}
