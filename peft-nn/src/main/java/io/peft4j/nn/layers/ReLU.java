package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;

/** {@code torch.nn.ReLU}: {@code max(x, 0)}. */
public final class ReLU extends Module {
    @Override
    public NDArray forward(NDArray x) {
        return F.relu(x);
    }
}
