package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;

/** Zeroes elements with probability {@code p} in training mode and rescales by {@code 1/(1-p)}. */
public class Dropout extends Module {
    private final float p;

    public Dropout(double p) {
        if (p < 0 || p >= 1) {
            throw new IllegalArgumentException("dropout probability must be in [0, 1), got " + p);
        }
        this.p = (float) p;
    }

    public float p() {
        return p;
    }

    @Override
    public NDArray forward(NDArray x) {
        return F.dropout(x, p, isTraining());
    }

    @Override
    public String extraRepr() {
        return "p=" + p;
    }
}
