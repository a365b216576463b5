package io.peft4j.cli.demo;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;

import java.util.List;

/**
 * What the demo needs from a LoRA-wrapped model: the subset of {@code io.peft4j.model.PeftModel}'s API it
 * uses, so the LoRA step stays in one method ({@link FashionMnistDemo#attachLora}) and the rest of the demo
 * does not care which implementation is behind it.
 */
interface LoraAttachment {
    NDArray forward(NDArray x);

    List<Param> trainableParameters();

    /** {@code trainable params: N || all params: M || trainable%: x.xxxx}, exactly as HF prints it. */
    String trainableParametersLine();

    /** Base-model behaviour until closed. */
    AutoCloseable disableAdapter();

    /** The wrapped model (modified in place). */
    Module baseModel();
}
