package io.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** Returns its input. */
public final class Identity extends Module {
    @Override
    public NDArray forward(NDArray input) {
        return input;
    }
}
