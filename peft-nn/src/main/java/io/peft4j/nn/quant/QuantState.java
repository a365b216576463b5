package io.peft4j.nn.quant;

import java.util.Arrays;

/**
 * What bitsandbytes' {@code QuantState} holds for one 4-bit tensor, as Java arrays: the quant type, block size,
 * original shape and dtype, the 16-value code book, and the per-block absmax constants, either plain float32
 * ({@link #absmax}) or double-quantised ({@link #absmaxCodes} with the nested state).
 *
 * @param quantType       {@code "nf4"} or {@code "fp4"}
 * @param blocksize       elements per absmax block
 * @param shape           the original (dequantised) shape, e.g. {@code [out, in]}
 * @param dtype           the original dtype name as bitsandbytes writes it ({@code "float32"}, {@code "float16"},
 *                        {@code "bfloat16"}); dequantisation in peft4j always computes in float32
 * @param code            the 16-value code book ({@code quant_map})
 * @param absmax          plain absmax per block, or null when nested
 * @param absmaxCodes     8-bit codes of {@code absmax - offset}, or null when not nested
 * @param nestedAbsmax    absmax of each nested block of {@code absmax - offset}
 * @param nestedBlocksize elements per nested block (bitsandbytes uses 256)
 * @param nestedCode      the 256-value nested code book ({@code nested_quant_map})
 * @param nestedDtype     dtype name of the nested state ({@code "float32"})
 * @param offset          mean of the absmax values subtracted before the nested quantisation
 */
public record QuantState(String quantType, int blocksize, long[] shape, String dtype, float[] code, float[] absmax,
                         byte[] absmaxCodes, float[] nestedAbsmax, int nestedBlocksize, float[] nestedCode,
                         String nestedDtype, float offset) {

    /** Block sizes bitsandbytes accepts for 4-bit quantisation. */
    public static final int[] VALID_BLOCKSIZES = {32, 64, 128, 256, 512, 1024, 2048, 4096};

    public boolean nested() {
        return absmaxCodes != null;
    }

    /** Number of elements of the original tensor. */
    public long numel() {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    /** Number of absmax blocks ({@code ceil(numel / blocksize)}). */
    public int numBlocks() {
        return (int) ((numel() + blocksize - 1) / blocksize);
    }

    /** The absmax of every block as float32 (undoing the double quantisation when nested). */
    public float[] absmaxFloat() {
        if (!nested()) {
            return absmax.clone();
        }
        float[] out = new float[absmaxCodes.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = nestedCode[absmaxCodes[i] & 0xff] * nestedAbsmax[i / nestedBlocksize] + offset;
        }
        return out;
    }

    @Override
    public String toString() {
        return "QuantState(" + quantType + ", blocksize=" + blocksize + ", shape=" + Arrays.toString(shape)
                + ", dtype=" + dtype + (nested() ? ", nested blocksize=" + nestedBlocksize + ", offset=" + offset : "")
                + ")";
    }
}
