package io.peft4j.cli.demo;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Linear;

/**
 * The tutorial's deliberately over-sized classifier: 784-1000-2000-10 with ReLU.
 *
 * <p>Children are reached through {@link #call} by name on every forward, never through fields, so
 * {@code getPeftModel} can swap {@code linear1..3} for LoRA layers in place.
 */
public final class OversizedMlp extends Module {
    public static final int HIDDEN1 = 1000;
    public static final int HIDDEN2 = 2000;

    public OversizedMlp(NDManager manager) {
        registerModule("linear1", new Linear(manager, FashionMnist.PIXELS, HIDDEN1, true));
        registerModule("linear2", new Linear(manager, HIDDEN1, HIDDEN2, true));
        registerModule("linear3", new Linear(manager, HIDDEN2, FashionMnist.NUM_CLASSES, true));
    }

    /** @param x images {@code [N, 28, 28]} or {@code [N, 784]}; returns logits {@code [N, 10]} */
    @Override
    public NDArray forward(NDArray x) {
        NDArray h = x.reshape(-1, FashionMnist.PIXELS);
        h = F.relu(call("linear1", h));
        h = F.relu(call("linear2", h));
        return call("linear3", h);
    }
}
