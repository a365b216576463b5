package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Module;

/** {@code torch.nn.LayerNorm} over the last axis with {@code weight} and {@code bias}. */
public class LayerNorm extends Module {
    private final float eps;
    private final long dim;

    public LayerNorm(NDManager manager, long dim, double eps) {
        this.eps = (float) eps;
        this.dim = dim;
        registerParameter("weight", manager.ones(new Shape(dim)));
        registerParameter("bias", manager.zeros(new Shape(dim)));
    }

    @Override
    public NDArray forward(NDArray x) {
        return ai.djl.nn.norm.LayerNorm.layerNorm(x, new Shape(dim), param("weight").data(),
                param("bias").data(), eps).singletonOrThrow();
    }

    @Override
    public String extraRepr() {
        return "(" + dim + ",), eps=" + eps;
    }
}
