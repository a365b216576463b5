package io.peft4j.nn.quant;

import java.util.Arrays;

/**
 * bitsandbytes' blockwise quantisation in Java (used once, at load or merge time; the forward pass dequantises with
 * DJL ops in {@link Linear4bit}).
 *
 * <p>4-bit: the flattened tensor is cut into blocks of {@code blocksize} (the last one may be shorter), each scaled
 * by its absmax to [-1, 1] and encoded as the index of the nearest code-book value; two codes per byte, the first
 * element in the high nibble, an odd length padded with a zero code. Double quantisation: the absmax values minus
 * their mean are quantised blockwise (256 per block) to 8-bit codes of bitsandbytes' dynamic map.
 */
public final class Quantizer {
    private Quantizer() {}

    /** Default nested block size of bitsandbytes' double quantisation. */
    public static final int NESTED_BLOCKSIZE = 256;

    /** Packed codes and their quant state. */
    public record Packed(byte[] data, QuantState state) {}

    /** Fails with a clear message unless bitsandbytes accepts {@code blocksize} for 4-bit quantisation. */
    public static void checkBlocksize(int blocksize, String what) {
        for (int b : QuantState.VALID_BLOCKSIZES) {
            if (b == blocksize) {
                return;
            }
        }
        throw new IllegalArgumentException(what + ": blocksize " + blocksize + " is not supported by 4-bit "
                + "quantisation (allowed: " + Arrays.toString(QuantState.VALID_BLOCKSIZES) + ")");
    }

    /** Quantises {@code w} (row-major, of {@code shape}) to 4 bits. */
    public static Packed quantize4bit(float[] w, long[] shape, String quantType, int blocksize, boolean doubleQuant) {
        checkBlocksize(blocksize, "quantize4bit");
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        if (n != w.length) {
            throw new IllegalArgumentException("quantize4bit: shape " + Arrays.toString(shape) + " has " + n
                    + " elements, data has " + w.length);
        }
        float[] code = QuantCodes.fourBit(quantType);
        QuantCodes.Encoder enc = new QuantCodes.Encoder(code);
        int zeroCode = enc.encode(0f);
        int blocks = (w.length + blocksize - 1) / blocksize;
        float[] absmax = new float[blocks];
        byte[] packed = new byte[(w.length + 1) / 2];
        for (int b = 0; b < blocks; b++) {
            int from = b * blocksize;
            int to = Math.min(w.length, from + blocksize);
            float amax = 0f;
            for (int i = from; i < to; i++) {
                amax = Math.max(amax, Math.abs(w[i]));
            }
            absmax[b] = amax;
            for (int i = from; i < to; i++) {
                int q = amax == 0f ? zeroCode : enc.encode(Math.max(-1f, Math.min(1f, w[i] / amax)));
                packed[i >> 1] |= (byte) ((i & 1) == 0 ? q << 4 : q);
            }
        }
        return new Packed(packed, stateFor(absmax, shape, quantType, blocksize, doubleQuant));
    }

    /**
     * The quant state of a tensor of {@code shape} whose blocks have these absmax values: plain, or with the absmax
     * double-quantised ({@code absmax - mean} in 8-bit dynamic codes, blocks of {@link #NESTED_BLOCKSIZE}).
     */
    public static QuantState stateFor(float[] absmax, long[] shape, String quantType, int blocksize,
                                      boolean doubleQuant) {
        float[] code = QuantCodes.fourBit(quantType);
        int blocks = absmax.length;
        if (!doubleQuant) {
            return new QuantState(quantType, blocksize, shape.clone(), "float32", code, absmax,
                    null, null, 0, null, null, 0f);
        }
        float offset = mean(absmax);
        float[] centred = new float[blocks];
        for (int i = 0; i < blocks; i++) {
            centred[i] = absmax[i] - offset;
        }
        float[] nestedCode = QuantCodes.dynamic8bit();
        byte[] codes = new byte[blocks];
        float[] nestedAbsmax = quantizeBlockwise8(centred, nestedCode, NESTED_BLOCKSIZE, codes);
        return new QuantState(quantType, blocksize, shape.clone(), "float32", code, null, codes,
                nestedAbsmax, NESTED_BLOCKSIZE, nestedCode, "float32", offset);
    }

    private static float mean(float[] v) {
        double s = 0;
        for (float x : v) {
            s += x;
        }
        return (float) (s / v.length);
    }

    /**
     * 8-bit blockwise quantisation ({@code quantize_blockwise}): writes the code of each element to {@code out}
     * and returns the absmax of each block.
     */
    public static float[] quantizeBlockwise8(float[] x, float[] code, int blocksize, byte[] out) {
        QuantCodes.Encoder enc = new QuantCodes.Encoder(code);
        int zeroCode = enc.encode(0f);
        int blocks = (x.length + blocksize - 1) / blocksize;
        float[] absmax = new float[blocks];
        for (int b = 0; b < blocks; b++) {
            int from = b * blocksize;
            int to = Math.min(x.length, from + blocksize);
            float amax = 0f;
            for (int i = from; i < to; i++) {
                amax = Math.max(amax, Math.abs(x[i]));
            }
            absmax[b] = amax;
            for (int i = from; i < to; i++) {
                out[i] = (byte) (amax == 0f ? zeroCode : enc.encode(Math.max(-1f, Math.min(1f, x[i] / amax))));
            }
        }
        return absmax;
    }

    /** The 4-bit code of element {@code i} of packed data. */
    public static int codeAt(byte[] packed, long i) {
        int b = packed[(int) (i >> 1)] & 0xff;
        return (i & 1) == 0 ? b >>> 4 : b & 0x0f;
    }

    /** Dequantises in Java ({@code code[q] * absmax_block}, float32), row-major in the state's shape. */
    public static float[] dequantize4bit(byte[] packed, QuantState state) {
        long n = state.numel();
        if (packed.length != (n + 1) / 2) {
            throw new IllegalArgumentException("dequantize4bit: " + packed.length + " packed bytes do not match "
                    + state + " (expected " + (n + 1) / 2 + ")");
        }
        float[] absmax = state.absmaxFloat();
        float[] code = state.code();
        float[] out = new float[(int) n];
        for (int i = 0; i < out.length; i++) {
            out[i] = code[codeAt(packed, i)] * absmax[i / state.blocksize()];
        }
        return out;
    }
}
