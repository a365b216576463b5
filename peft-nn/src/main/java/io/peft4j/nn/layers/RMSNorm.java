package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;

/** LLaMA's RMSNorm: {@code w * x / sqrt(mean(x^2) + eps)} over the last axis. */
public class RMSNorm extends Module {
    private final float eps;

    public RMSNorm(NDManager manager, long dim, double eps) {
        this.eps = (float) eps;
        registerParameter("weight", manager.ones(new Shape(dim)));
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray variance = x.square().mean(new int[] {-1}, true);
        // The reciprocal is taken on the small [.., 1] tensor so the full-size op (and its backward) is a mul.
        NDArray inv = F.scalar(variance, 1f).div(F.add(variance, eps).sqrt());
        return x.mul(inv).mul(param("weight").data());
    }

    @Override
    public String extraRepr() {
        return param("weight").shape() + ", eps=" + eps;
    }
}
