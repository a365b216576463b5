package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class HalfFloatsTest {
  private static int bf16(float f) {
    return HalfFloats.floatToBf16(f) & 0xFFFF;
  }

  private static int f16(float f) {
    return HalfFloats.floatToHalf(f) & 0xFFFF;
  }

  @Test
  void bf16EncodesHandComputedPatterns() {
    assertThat(bf16(1.0f)).isEqualTo(0x3F80);
    assertThat(bf16(-2.5f)).isEqualTo(0xC020);
    assertThat(bf16(0.0f)).isEqualTo(0x0000);
    assertThat(bf16(-0.0f)).isEqualTo(0x8000);
    // 65504 = 0x477FE000: dropped half 0xE000 > 0x8000 rounds up to 0x4780 (65536).
    assertThat(bf16(65504f)).isEqualTo(0x4780);
    assertThat(bf16(Float.POSITIVE_INFINITY)).isEqualTo(0x7F80);
    assertThat(bf16(Float.NEGATIVE_INFINITY)).isEqualTo(0xFF80);
    assertThat(bf16(Float.NaN)).isEqualTo(0x7FC0);
    assertThat(bf16(Float.intBitsToFloat(0xFFC12345))).isEqualTo(0x7FC0);
    // Smallest bf16 subnormal is float bits 0x00010000.
    assertThat(bf16(Float.intBitsToFloat(0x00010000))).isEqualTo(0x0001);
    // Float.MAX_VALUE rounds past the largest finite bf16 into infinity.
    assertThat(bf16(Float.MAX_VALUE)).isEqualTo(0x7F80);
  }

  @Test
  void bf16RoundsTiesToEven() {
    assertThat(bf16(Float.intBitsToFloat(0x3F808000))).isEqualTo(0x3F80); // tie, even stays
    assertThat(bf16(Float.intBitsToFloat(0x3F818000))).isEqualTo(0x3F82); // tie, odd rounds up
    assertThat(bf16(Float.intBitsToFloat(0x3F808001))).isEqualTo(0x3F81); // above tie
    assertThat(bf16(Float.intBitsToFloat(0x3F807FFF))).isEqualTo(0x3F80); // below tie
    assertThat(bf16(Float.intBitsToFloat(0xBF818000))).isEqualTo(0xBF82); // negative tie
  }

  @Test
  void bf16Decodes() {
    assertThat(HalfFloats.bf16ToFloat(0x3F80)).isEqualTo(1.0f);
    assertThat(HalfFloats.bf16ToFloat(0xC020)).isEqualTo(-2.5f);
    assertThat(HalfFloats.bf16ToFloat(0x0001)).isEqualTo(Float.intBitsToFloat(0x00010000));
    assertThat(HalfFloats.bf16ToFloat(0xFF80)).isEqualTo(Float.NEGATIVE_INFINITY);
    assertThat(HalfFloats.bf16ToFloat(0x7FC0)).isNaN();
  }

  @Test
  void f16EncodesHandComputedPatterns() {
    assertThat(f16(1.0f)).isEqualTo(0x3C00);
    assertThat(f16(-2.5f)).isEqualTo(0xC100);
    assertThat(f16(65504f)).isEqualTo(0x7BFF);
    assertThat(f16(-0.0f)).isEqualTo(0x8000);
    assertThat(f16(0x1p-24f)).isEqualTo(0x0001); // smallest subnormal
    assertThat(f16(0x1p-14f)).isEqualTo(0x0400); // smallest normal
    assertThat(f16(1023 * 0x1p-24f)).isEqualTo(0x03FF); // largest subnormal
    assertThat(f16(Float.POSITIVE_INFINITY)).isEqualTo(0x7C00);
    assertThat(f16(Float.NEGATIVE_INFINITY)).isEqualTo(0xFC00);
    assertThat(f16(Float.NaN)).isEqualTo(0x7E00);
    assertThat(f16(1e6f)).isEqualTo(0x7C00); // overflow
    assertThat(f16(1e-10f)).isEqualTo(0x0000); // underflow
    assertThat(f16(-1e-10f)).isEqualTo(0x8000);
  }

  @Test
  void f16RoundsTiesToEven() {
    assertThat(f16(Float.intBitsToFloat(0x3F801000))).isEqualTo(0x3C00); // 1 + 2^-11: tie -> even
    assertThat(f16(Float.intBitsToFloat(0x3F803000))).isEqualTo(0x3C02); // 1 + 3*2^-11: tie -> even
    assertThat(f16(Float.intBitsToFloat(0x3F801001))).isEqualTo(0x3C01); // just above tie
    assertThat(f16(65519f)).isEqualTo(0x7BFF);
    assertThat(f16(65520f)).isEqualTo(0x7C00); // tie between 65504 and 65536 -> even = inf
    assertThat(f16(0x1p-25f)).isEqualTo(0x0000); // subnormal tie between 0 and 1 ulp -> 0
    assertThat(f16(3 * 0x1p-25f)).isEqualTo(0x0002); // tie between 1 and 2 ulps -> 2
    assertThat(f16(0x1p-25f * 1.0000001f)).isEqualTo(0x0001); // just above the tie
    // Largest subnormal + half ulp ties to even: 0x3FF is odd so it rounds up into 0x0400.
    assertThat(f16(1023.5f * 0x1p-24f)).isEqualTo(0x0400);
  }

  @Test
  void f16Decodes() {
    assertThat(HalfFloats.halfToFloat(0x3C00)).isEqualTo(1.0f);
    assertThat(HalfFloats.halfToFloat(0xC100)).isEqualTo(-2.5f);
    assertThat(HalfFloats.halfToFloat(0x7BFF)).isEqualTo(65504f);
    assertThat(HalfFloats.halfToFloat(0x0001)).isEqualTo(5.9604645e-8f);
    assertThat(HalfFloats.halfToFloat(0x8001)).isEqualTo(-5.9604645e-8f);
    assertThat(HalfFloats.halfToFloat(0x03FF)).isEqualTo(6.097555e-5f);
    assertThat(HalfFloats.halfToFloat(0x7C00)).isEqualTo(Float.POSITIVE_INFINITY);
    assertThat(HalfFloats.halfToFloat(0xFC00)).isEqualTo(Float.NEGATIVE_INFINITY);
    assertThat(HalfFloats.halfToFloat(0x7E00)).isNaN();
    assertThat(Float.floatToRawIntBits(HalfFloats.halfToFloat(0x8000))).isEqualTo(0x80000000);
  }

  @Test
  void everyFiniteHalfRoundTrips() {
    for (int h = 0; h < 0x10000; h++) {
      float f = HalfFloats.halfToFloat(h);
      if (!Float.isNaN(f)) {
        assertThat(f16(f)).as("half 0x%04x", h).isEqualTo(h);
      }
    }
  }
}
