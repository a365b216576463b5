package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;

/** {@code torch.nn.Linear}: {@code weight} is {@code (out, in)}; {@code y = x W^T + b}. */
public class Linear extends Module {
    private final long inFeatures;
    private final long outFeatures;

    /** Initialised like PyTorch: weight and bias uniform in {@code ±1/sqrt(in)}. */
    public Linear(NDManager manager, long inFeatures, long outFeatures, boolean bias) {
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        float bound = (float) (1.0 / Math.sqrt(inFeatures));
        Shape w = new Shape(outFeatures, inFeatures);
        NDArray deferred = Init.deferred(manager, w);
        registerParameter("weight", deferred != null ? deferred : manager.randomUniform(-bound, bound, w));
        if (bias) {
            Shape b = new Shape(outFeatures);
            NDArray deferredBias = Init.deferred(manager, b);
            registerParameter("bias", deferredBias != null ? deferredBias : manager.randomUniform(-bound, bound, b));
        }
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    public Param weight() {
        return param("weight");
    }

    /** The bias parameter or null. */
    public Param bias() {
        return paramOrNull("bias");
    }

    @Override
    public NDArray forward(NDArray x) {
        Param b = bias();
        return F.linear(x, weight().data(), b == null ? null : b.data());
    }

    @Override
    public String extraRepr() {
        return "in_features=" + inFeatures + ", out_features=" + outFeatures + ", bias=" + (bias() != null);
    }
}
