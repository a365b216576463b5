package io.peft4j.nn.safetensors;

/**
 * Bit-exact IEEE half (F16) and bfloat16 (BF16) conversions, matching PyTorch's CPU casts.
 *
 * <p>Exists because {@code Float.float16ToFloat} is Java 20+ and Java has no bfloat16 at all.
 * Narrowing rounds to nearest, ties to even.
 */
public final class HalfFloats {
  private HalfFloats() {}

  /** bfloat16 bits (low 16 bits of the argument) to float; exact. */
  public static float bf16ToFloat(int bits) {
    return Float.intBitsToFloat((bits & 0xFFFF) << 16);
  }

  /** float to bfloat16 bits, round-to-nearest-even; every NaN becomes the canonical 0x7FC0 like c10. */
  public static short floatToBf16(float f) {
    if (Float.isNaN(f)) {
      return (short) 0x7FC0;
    }
    int bits = Float.floatToRawIntBits(f);
    // Adding 0x7FFF plus the lsb of the kept half rounds to nearest with ties to even;
    // the carry may ripple into the exponent, which correctly yields the next binade or infinity.
    int rounded = bits + 0x7FFF + ((bits >>> 16) & 1);
    return (short) (rounded >>> 16);
  }

  /** IEEE binary16 bits (low 16 bits of the argument) to float; exact, including subnormals. */
  public static float halfToFloat(int h) {
    int sign = (h & 0x8000) << 16;
    int exp = (h >>> 10) & 0x1F;
    int mant = h & 0x3FF;
    if (exp == 0) {
      // Subnormal (or zero): mant * 2^-24 is exactly representable as a float.
      float magnitude = mant * 0x1p-24f;
      return sign != 0 ? -magnitude : magnitude;
    }
    if (exp == 0x1F) {
      return Float.intBitsToFloat(sign | 0x7F800000 | (mant << 13));
    }
    return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
  }

  /** float to IEEE binary16 bits, round-to-nearest-even; overflow gives infinity, NaN stays NaN. */
  public static short floatToHalf(float f) {
    int bits = Float.floatToRawIntBits(f);
    int sign = (bits >>> 16) & 0x8000;
    int exp = (bits >>> 23) & 0xFF;
    int mant = bits & 0x7FFFFF;
    if (exp == 0xFF) {
      // Keep the top payload bits and force the quiet bit so a NaN never truncates to infinity.
      return (short) (mant == 0 ? sign | 0x7C00 : sign | 0x7E00 | (mant >>> 13));
    }
    int e = exp - 127 + 15;
    if (e >= 0x1F) {
      return (short) (sign | 0x7C00);
    }
    if (e <= 0) {
      // Result is a half subnormal (or zero): value / 2^-24 = full / 2^shift.
      int shift = 14 - e;
      if (exp == 0 || shift > 24) {
        return (short) sign;
      }
      int full = mant | 0x800000;
      int m = full >>> shift;
      int rem = full & ((1 << shift) - 1);
      int halfway = 1 << (shift - 1);
      if (rem > halfway || (rem == halfway && (m & 1) == 1)) {
        m++; // may become 0x400, which is exactly the smallest normal encoding
      }
      return (short) (sign | m);
    }
    int h = (e << 10) | (mant >>> 13);
    int rem = mant & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1)) {
      h++; // carry into the exponent is the correct rounding, up to infinity (0x7C00)
    }
    return (short) (sign | h);
  }
}
