package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.nn.Activation;

/** Functional ops shared by layers and models (the {@code torch.nn.functional} of peft4j). */
public final class F {
    private F() {}

    /**
     * A rank-0 tensor allocated by libtorch. DJL's {@code mul(Number)} wraps the scalar around a Java buffer
     * that is freed right after the call, while autograd keeps the scalar for the backward pass: backward
     * then reads freed memory. Every differentiable scalar op must go through these helpers.
     */
    public static NDArray scalar(NDArray like, float value) {
        return like.getManager().full(new ai.djl.ndarray.types.Shape(), value, like.getDataType());
    }

    public static NDArray mul(NDArray x, float value) {
        return x.mul(scalar(x, value));
    }

    public static NDArray div(NDArray x, float value) {
        return x.div(scalar(x, value));
    }

    public static NDArray add(NDArray x, float value) {
        return x.add(scalar(x, value));
    }

    /** True when every element is finite (no NaN, no ±Inf); the intermediate masks are freed at once. */
    public static boolean allFinite(NDArray a) {
        try (NDArray nan = a.isNaN(); NDArray anyNan = nan.any(); NDArray inf = a.isInfinite();
             NDArray anyInf = inf.any()) {
            return !anyNan.getBoolean() && !anyInf.getBoolean();
        }
    }

    /** {@code x @ weight.T + bias} through libtorch's fused linear; {@code bias} may be null. */
    public static NDArray linear(NDArray x, NDArray weight, NDArray bias) {
        return bias == null
                ? ai.djl.nn.core.Linear.linear(x, weight).singletonOrThrow()
                : ai.djl.nn.core.Linear.linear(x, weight, bias).singletonOrThrow();
    }

    /** Rows of {@code weight} selected by integer ids; differentiable in {@code weight}. */
    public static NDArray embedding(NDArray ids, NDArray weight) {
        return ai.djl.nn.core.Embedding.embedding(ids, weight, ai.djl.ndarray.types.SparseFormat.DENSE)
                .singletonOrThrow();
    }

    public static NDArray silu(NDArray x) {
        return x.mul(Activation.sigmoid(x));
    }

    public static NDArray relu(NDArray x) {
        return Activation.relu(x);
    }

    /** GELU as in {@code torch.nn.functional.gelu(approximate="tanh")} (GPT-2's {@code gelu_new}). */
    public static NDArray geluTanh(NDArray x) {
        NDArray cube = x.mul(x).mul(x);
        NDArray inner = mul(x.add(mul(cube, 0.044715f)), (float) Math.sqrt(2.0 / Math.PI));
        return mul(x, 0.5f).mul(add(inner.tanh(), 1f));
    }

    /** Exact GELU (erf form). */
    public static NDArray gelu(NDArray x) {
        return Activation.gelu(x);
    }

    public static NDArray dropout(NDArray x, float p, boolean training) {
        if (!training || p <= 0f) {
            return x;
        }
        return ai.djl.nn.norm.Dropout.dropout(x, p, true).singletonOrThrow();
    }

    /**
     * Mean cross-entropy over positions whose label is not {@code ignoreIndex}, like
     * {@code torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)}.
     *
     * @param logits {@code [N, C]}
     * @param labels {@code [N]} integer class ids
     */
    public static NDArray crossEntropy(NDArray logits, NDArray labels, long ignoreIndex) {
        NDArray ids = labels.toType(DataType.INT64, false);
        NDArray keep = ids.neq(ignoreIndex);
        NDArray safe = ids.mul(keep.toType(DataType.INT64, false));
        NDArray logp = logits.logSoftmax(-1);
        NDArray picked = logp.gather(safe.expandDims(-1), -1).squeeze(-1);
        NDArray keepF = keep.toType(DataType.FLOAT32, false);
        NDArray count = keepF.sum().maximum(1f);
        return picked.mul(keepF).sum().neg().div(count);
    }
}
