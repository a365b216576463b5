package io.peft4j.nn.quant;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class QuantizerTest {

    @Test
    void nf4CodeBookIsBitsandbytes() {
        float[] c = QuantCodes.fourBit("nf4");
        assertThat(c).hasSize(16);
        assertThat(c[0]).isEqualTo(-1.0f);
        assertThat(c[1]).isEqualTo(-0.6961928009986877f);
        assertThat(c[6]).isEqualTo(-0.09105003625154495f);
        assertThat(c[7]).isEqualTo(0.0f);
        assertThat(c[8]).isEqualTo(0.07958029955625534f);
        assertThat(c[14]).isEqualTo(0.7229568362236023f);
        assertThat(c[15]).isEqualTo(1.0f);
        for (int i = 1; i < 16; i++) {
            assertThat(c[i]).isGreaterThan(c[i - 1]);
        }
    }

    @Test
    void fp4CodeBookIsSignMagnitudeOverTwelve() {
        float[] c = QuantCodes.fourBit("fp4");
        assertThat(c[0]).isEqualTo(0f);
        assertThat(c[1]).isEqualTo(0.0625f / 12f);
        assertThat(c[2]).isEqualTo(8f / 12f);
        assertThat(c[3]).isEqualTo(1f);
        assertThat(c[7]).isEqualTo(0.25f);
        assertThat(c[11]).isEqualTo(-1f);
        assertThat(c[14]).isEqualTo(-2f / 12f);
        assertThatThrownBy(() -> QuantCodes.fourBit("int4")).hasMessageContaining("\"nf4\" or \"fp4\"")
                .hasMessageContaining("int4");
    }

    @Test
    void dynamicMapHas256SortedValuesFromZeroPointFiveFiveMicroToOne() {
        float[] d = QuantCodes.dynamic8bit();
        assertThat(d).hasSize(256);
        for (int i = 1; i < 256; i++) {
            assertThat(d[i]).isGreaterThan(d[i - 1]);
        }
        assertThat(d[0]).isCloseTo(-0.99296875f, within(1e-6f)); // -(1 + (1 - 0.9/64)) / 2
        assertThat(d[127]).isEqualTo(0f);
        assertThat(d[128]).isCloseTo(5.5e-7f, within(1e-12f)); // 1e-6 * (0.1 + 1) / 2
        assertThat(d[254]).isCloseTo(0.99296875f, within(1e-6f));
        assertThat(d[255]).isEqualTo(1f);
    }

    @Test
    void quantizesAndPacksHandComputedTensor() {
        // one block (n=5 < 64), absmax 2: normalised 0.5, -0.25, 0.125, 0, -1
        // nearest NF4: 0.5 -> 12 (0.4407), -0.25 -> 4 (-0.2844), 0.125 -> 9 (0.1609), 0 -> 7, -1 -> 0
        float[] w = {1.0f, -0.5f, 0.25f, 0f, -2.0f};
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {5}, "nf4", 64, false);
        assertThat(p.data()).containsExactly((byte) 0xC4, (byte) 0x97, (byte) 0x00); // high nibble first, padded
        assertThat(p.state().absmax()).containsExactly(2.0f);
        float[] back = Quantizer.dequantize4bit(p.data(), p.state());
        assertThat(back).containsExactly(0.44070982933044434f * 2, -0.28444138169288635f * 2,
                0.16093020141124725f * 2, 0f, -2f);
    }

    @Test
    void eachBlockHasItsOwnAbsmaxIncludingThePartialLastBlock() {
        float[] w = new float[33];
        w[0] = 4f;
        w[1] = -1f;    // -0.25 of 4 -> code 4
        w[31] = 2.9f;  // 0.725 of 4 -> code 14 (0.7230)
        w[32] = -3f;   // partial block of one: absmax 3, code 0
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {33}, "nf4", 32, false);
        assertThat(p.state().absmax()).containsExactly(4f, 3f);
        assertThat(p.data()).hasSize(17);
        assertThat(p.data()[0]).isEqualTo((byte) 0xF4);
        assertThat(p.data()[15]).isEqualTo((byte) 0x7E);
        assertThat(p.data()[16]).isEqualTo((byte) 0x00);
        float[] back = Quantizer.dequantize4bit(p.data(), p.state());
        assertThat(back[1]).isEqualTo(-0.28444138169288635f * 4);
        assertThat(back[31]).isEqualTo(0.7229568362236023f * 4);
        assertThat(back[32]).isEqualTo(-3f);
        assertThat(back[2]).isEqualTo(0f);
    }

    @Test
    void doubleQuantisationOfAbsmaxHandComputed() {
        // two blocks with absmax 1 and 3: offset 2, centred -1 and 1, nested absmax 1;
        // nearest dynamic codes: index 0 (-0.99296875) and 255 (1.0)
        float[] w = new float[64];
        w[0] = 1f;
        w[32] = 3f;
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {2, 32}, "nf4", 32, true);
        QuantState s = p.state();
        assertThat(s.nested()).isTrue();
        assertThat(s.offset()).isEqualTo(2f);
        assertThat(s.nestedAbsmax()).containsExactly(1f);
        assertThat(s.absmaxCodes()).containsExactly((byte) 0, (byte) 255);
        float[] am = s.absmaxFloat();
        assertThat(am[0]).isCloseTo(2f - 0.99296875f, within(1e-6f));
        assertThat(am[1]).isEqualTo(3f);
    }

    @Test
    void nf4ErrorOnStandardNormalWeightsIsTheExpectedOne() {
        Random r = new Random(7);
        float[] w = new float[64 * 1024];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) r.nextGaussian();
        }
        double nf4 = relRms(w, "nf4", false);
        double nf4dq = relRms(w, "nf4", true);
        double fp4 = relRms(w, "fp4", false);
        System.out.printf(java.util.Locale.ROOT, "qlora: relative RMS error on N(0,1), blocks of 64: nf4 %.4f, "
                + "nf4+double quant %.4f, fp4 %.4f%n", nf4, nf4dq, fp4);
        // NF4 of N(0,1) in blocks of 64: about 9-10% relative RMS error; FP4 is worse on normal data
        assertThat(nf4).isBetween(0.07, 0.11);
        assertThat(fp4).isGreaterThan(nf4);
        assertThat(nf4dq).isCloseTo(nf4, within(0.005));
        // every element is within half the widest code gap (-1.0 .. -0.6962) of its block's absmax
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {w.length}, "nf4", 64, false);
        float[] back = Quantizer.dequantize4bit(p.data(), p.state());
        for (int i = 0; i < w.length; i++) {
            float bound = p.state().absmax()[i / 64] * (1f - 0.6961928009986877f) / 2f + 1e-6f;
            assertThat(Math.abs(back[i] - w[i])).isLessThanOrEqualTo(bound);
        }
    }

    @Test
    void doubleQuantisedAbsmaxStaysWithinHalfAGapOfTheDynamicMap() {
        Random r = new Random(11);
        float[] w = new float[64 * 600];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) r.nextGaussian() * (1 + i / 6400);
        }
        Quantizer.Packed plain = Quantizer.quantize4bit(w, new long[] {w.length}, "nf4", 64, false);
        Quantizer.Packed dq = Quantizer.quantize4bit(w, new long[] {w.length}, "nf4", 64, true);
        assertThat(dq.data()).containsExactly(plain.data()); // codes do not depend on how absmax is stored
        float[] exact = plain.state().absmax();
        float[] approx = dq.state().absmaxFloat();
        assertThat(dq.state().nestedAbsmax()).hasSize(3); // 600 blocks in nested blocks of 256
        for (int i = 0; i < exact.length; i++) {
            float nestedMax = dq.state().nestedAbsmax()[i / 256];
            assertThat(Math.abs(approx[i] - exact[i])).isLessThanOrEqualTo(nestedMax * 0.0071f + 1e-5f);
        }
    }

    @Test
    void badBlocksizeAndShapeAreReported() {
        assertThatThrownBy(() -> Quantizer.quantize4bit(new float[96], new long[] {96}, "nf4", 48, false))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("blocksize 48")
                .hasMessageContaining("allowed");
        assertThatThrownBy(() -> Quantizer.quantize4bit(new float[10], new long[] {3, 4}, "nf4", 64, false))
                .hasMessageContaining("[3, 4] has 12 elements, data has 10");
        Quantizer.Packed p = Quantizer.quantize4bit(new float[10], new long[] {10}, "nf4", 64, false);
        assertThatThrownBy(() -> Quantizer.dequantize4bit(new byte[4], p.state()))
                .hasMessageContaining("4 packed bytes").hasMessageContaining("expected 5");
    }

    static double relRms(float[] w, String type, boolean dq) {
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {w.length}, type, 64, dq);
        float[] back = Quantizer.dequantize4bit(p.data(), p.state());
        double num = 0;
        double den = 0;
        for (int i = 0; i < w.length; i++) {
            num += (back[i] - w[i]) * (double) (back[i] - w[i]);
            den += w[i] * (double) w[i];
        }
        return Math.sqrt(num / den);
    }
}
