package io.peft4j.nn.model;

import ai.djl.ndarray.NDArray;

import java.util.List;

/**
 * What a forward pass returns: logits, the loss when labels were given, and optionally every hidden state
 * (index 0 = embedding output, last = after the final norm, as in transformers).
 */
public record ModelOutput(NDArray logits, NDArray loss, List<NDArray> hiddenStates, List<NDArray[]> pastKeyValues) {
    public ModelOutput(NDArray logits, NDArray loss, List<NDArray> hiddenStates) {
        this(logits, loss, hiddenStates, null);
    }
}
