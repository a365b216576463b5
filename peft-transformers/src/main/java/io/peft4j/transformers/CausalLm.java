package io.peft4j.transformers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;

/** What every decoder-only model shares: its additive attention mask and its next-token loss. */
public final class CausalLm {
    /** transformers fills masked attention scores with {@code torch.finfo(float32).min}. */
    public static final float MASK_MIN = -Float.MAX_VALUE;

    private CausalLm() {}

    /**
     * Additive mask {@code [B or 1, 1, T, past+T]}: 0 where a query may attend, float32 min elsewhere. A
     * left-padded query row is fully masked; with a finite minimum its softmax is uniform and finite, as in
     * transformers on CPU.
     *
     * @param attentionMask null or {@code [B, past+T]} with 0 on padding
     */
    public static NDArray attentionMask(NDManager nd, NDArray attentionMask, long batch, long seq, long pastLen) {
        long total = pastLen + seq;
        NDArray qPos = nd.arange(pastLen, total).toType(DataType.INT64, false).reshape(seq, 1);
        NDArray kPos = nd.arange(0, total).toType(DataType.INT64, false).reshape(1, total);
        NDArray allowed = kPos.lte(qPos).reshape(1, 1, seq, total);
        if (attentionMask != null) {
            Shape ms = attentionMask.getShape();
            if (ms.dimension() != 2 || ms.get(0) != batch || ms.get(1) != total) {
                throw new IllegalArgumentException("attention_mask must have shape (" + batch + ", " + total
                        + ") = (batch, past + seq), got " + ms);
            }
            allowed = allowed.logicalAnd(attentionMask.neq(0).reshape(batch, 1, 1, total));
        }
        return allowed.logicalNot().toType(DataType.FLOAT32, false).mul(MASK_MIN);
    }

    /**
     * Next-token cross-entropy as transformers computes it: position t predicts label t+1, -100 ignored.
     * The labels are shifted instead of the logits (the last position gets -100): the same mean, without
     * a sliced copy of the logits and the zero-filled full-size gradient its backward would allocate.
     */
    public static NDArray loss(NDArray logits, NDArray labels) {
        long vocab = logits.getShape().get(2);
        long batch = labels.getShape().get(0);
        NDArray ids = labels.toType(DataType.INT64, false);
        NDArray pad = ids.getManager().full(new Shape(batch, 1), -100L);
        NDArray shiftLabels = ids.get(":, 1:").concat(pad, 1).reshape(-1);
        return F.crossEntropy(logits.reshape(-1, vocab), shiftLabels, -100);
    }
}
