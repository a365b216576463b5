package io.peft4j.nn.safetensors;

import java.nio.ByteBuffer;

/** Element-wise access to little-endian tensor bytes by dtype; buffers must be little-endian. */
final class Elements {
  private Elements() {}

  static double getDouble(ByteBuffer b, DType t, int i) {
    switch (t) {
      case F64:
        return b.getDouble(i * 8);
      case F32:
        return b.getFloat(i * 4);
      case F16:
        return HalfFloats.halfToFloat(b.getShort(i * 2));
      case BF16:
        return HalfFloats.bf16ToFloat(b.getShort(i * 2));
      default:
        return getLong(b, t, i);
    }
  }

  static float getFloat(ByteBuffer b, DType t, int i) {
    switch (t) {
      case F32:
        return b.getFloat(i * 4);
      case F16:
        return HalfFloats.halfToFloat(b.getShort(i * 2));
      case BF16:
        return HalfFloats.bf16ToFloat(b.getShort(i * 2));
      default:
        return (float) getDouble(b, t, i);
    }
  }

  static long getLong(ByteBuffer b, DType t, int i) {
    switch (t) {
      case I64:
        return b.getLong(i * 8);
      case I32:
        return b.getInt(i * 4);
      case I16:
        return b.getShort(i * 2);
      case I8:
        return b.get(i);
      case U8:
        return b.get(i) & 0xFF;
      case BOOL:
        return b.get(i) != 0 ? 1 : 0;
      default:
        // Truncation toward zero, like torch's float-to-integer cast.
        return (long) getDouble(b, t, i);
    }
  }

  static void putDouble(ByteBuffer b, DType t, int i, double v) {
    switch (t) {
      case F64:
        b.putDouble(i * 8, v);
        break;
      case F32:
        b.putFloat(i * 4, (float) v);
        break;
      case F16:
        b.putShort(i * 2, HalfFloats.floatToHalf((float) v));
        break;
      case BF16:
        b.putShort(i * 2, HalfFloats.floatToBf16((float) v));
        break;
      case BOOL:
        b.put(i, (byte) (v != 0 ? 1 : 0));
        break;
      default:
        putLong(b, t, i, (long) v);
    }
  }

  static void putLong(ByteBuffer b, DType t, int i, long v) {
    switch (t) {
      case I64:
        b.putLong(i * 8, v);
        break;
      case I32:
        b.putInt(i * 4, (int) v);
        break;
      case I16:
        b.putShort(i * 2, (short) v);
        break;
      case I8:
      case U8:
        b.put(i, (byte) v);
        break;
      case BOOL:
        b.put(i, (byte) (v != 0 ? 1 : 0));
        break;
      default:
        putDouble(b, t, i, (double) v);
    }
  }
}
