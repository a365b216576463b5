package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;

/** GPT-2's {@code Conv1D}: a linear layer whose {@code weight} is stored {@code (in, out)}; {@code y = x W + b}. */
public class Conv1D extends Module {
    private final long inFeatures;
    private final long outFeatures;

    public Conv1D(NDManager manager, long inFeatures, long outFeatures) {
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        Shape shape = new Shape(inFeatures, outFeatures);
        NDArray deferred = Init.deferred(manager, shape);
        registerParameter("weight", deferred != null ? deferred
                : manager.randomNormal(0f, 0.02f, shape, ai.djl.ndarray.types.DataType.FLOAT32));
        NDArray deferredBias = Init.deferred(manager, new Shape(outFeatures));
        registerParameter("bias", deferredBias != null ? deferredBias : manager.zeros(new Shape(outFeatures)));
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

    public Param bias() {
        return param("bias");
    }

    @Override
    public NDArray forward(NDArray x) {
        return x.matMul(weight().data()).add(bias().data());
    }

    @Override
    public String extraRepr() {
        return "nf=" + outFeatures + ", nx=" + inFeatures;
    }
}
