package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.Module;

/** {@code torch.nn.Tanh}. */
public final class Tanh extends Module {
    @Override
    public NDArray forward(NDArray x) {
        return x.tanh();
    }
}
