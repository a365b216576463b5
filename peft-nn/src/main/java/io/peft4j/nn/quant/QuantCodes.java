package io.peft4j.nn.quant;

import java.util.Arrays;

/**
 * The code books of bitsandbytes' 4-bit and 8-bit blockwise quantisation, and nearest-value encoding against them.
 */
public final class QuantCodes {
    private QuantCodes() {}

    /** NF4 as bitsandbytes' {@code get_4bit_type("nf4")}: quantiles of N(0,1), index 0..15 (peft-facts §7.1). */
    private static final float[] NF4 = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };

    /**
     * FP4 (1 sign, 2 exponent, 1 mantissa bit) as bitsandbytes' {@code get_4bit_type("fp4")}: the magnitudes
     * {@code 0, 0.0625, 8, 12, 4, 6, 2, 3} divided by 12, sign in bit 3.
     */
    private static final float[] FP4 = fp4();

    private static float[] fp4() {
        float[] mags = {0f, 0.0625f, 8f, 12f, 4f, 6f, 2f, 3f};
        float[] out = new float[16];
        for (int i = 0; i < 8; i++) {
            out[i] = mags[i] / 12f;
            out[i + 8] = -mags[i] / 12f;
        }
        return out;
    }

    /** The 16-value code book of a 4-bit quant type ({@code "nf4"} or {@code "fp4"}); a copy. */
    public static float[] fourBit(String quantType) {
        return switch (quantType) {
            case "nf4" -> NF4.clone();
            case "fp4" -> FP4.clone();
            default -> throw new IllegalArgumentException("4-bit quant_type must be \"nf4\" or \"fp4\", got \""
                    + quantType + "\"");
        };
    }

    /**
     * bitsandbytes' default 8-bit code for blockwise quantisation, {@code create_dynamic_map(signed=True)}:
     * for {@code i = 0..6}, the midpoints of {@code linspace(0.1, 1, 2^i + 1)} scaled by {@code 10^(i-6)}, with both
     * signs, plus 0 and 1; sorted (256 values). Used for the double quantisation of the 4-bit absmax constants.
     */
    public static float[] dynamic8bit() {
        float[] data = new float[256];
        int n = 0;
        for (int i = 0; i < 7; i++) {
            int items = (1 << i) + 1;
            float[] b = linspace(0.1f, 1f, items);
            float scale = (float) Math.pow(10, i - 6);
            for (int j = 0; j + 1 < items; j++) {
                float mean = (b[j] + b[j + 1]) / 2f;
                data[n++] = scale * mean;
                data[n++] = -(scale * mean);
            }
        }
        data[n++] = 0f;
        data[n++] = 1f;
        if (n != 256) {
            throw new AssertionError("dynamic map has " + n + " values");
        }
        Arrays.sort(data);
        return data;
    }

    /** {@code torch.linspace} in float32 (first half from the start, second half from the end). */
    private static float[] linspace(float start, float end, int steps) {
        float[] out = new float[steps];
        if (steps == 1) {
            out[0] = start;
            return out;
        }
        float step = (end - start) / (steps - 1);
        int half = steps / 2;
        for (int i = 0; i < steps; i++) {
            out[i] = i < half ? start + step * i : end - step * (steps - i - 1);
        }
        return out;
    }

    /**
     * Nearest-value encoder for a code book (any order): the index of the closest code, ties to the lower value,
     * via binary search over the midpoints of the sorted values.
     */
    public static final class Encoder {
        private final float[] sorted;
        private final int[] index;
        private final float[] mid;

        public Encoder(float[] code) {
            Integer[] order = new Integer[code.length];
            for (int i = 0; i < order.length; i++) {
                order[i] = i;
            }
            Arrays.sort(order, (a, b) -> Float.compare(code[a], code[b]));
            sorted = new float[code.length];
            index = new int[code.length];
            for (int i = 0; i < order.length; i++) {
                sorted[i] = code[order[i]];
                index[i] = order[i];
            }
            mid = new float[code.length - 1];
            for (int i = 0; i + 1 < sorted.length; i++) {
                mid[i] = (sorted[i] + sorted[i + 1]) / 2f;
            }
        }

        /** The index of the code value nearest to {@code x} (x is expected in [-1, 1]). */
        public int encode(float x) {
            int lo = 0;
            int hi = mid.length; // answer: number of midpoints strictly below x
            while (lo < hi) {
                int m = (lo + hi) >>> 1;
                if (x > mid[m]) {
                    lo = m + 1;
                } else {
                    hi = m;
                }
            }
            return index[lo];
        }
    }
}
