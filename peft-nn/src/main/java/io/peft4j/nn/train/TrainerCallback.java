package io.peft4j.nn.train;

import io.peft4j.nn.Param;

import java.nio.file.Path;
import java.util.Collection;
import java.util.Map;

/**
 * Hooks into a {@link Trainer} run (HF's {@code TrainerCallback}). Every method has an empty default. Models that
 * need a per-step hook (AdaLoRA's rank allocator) provide one through {@link Provider}, so the loop has no
 * special cases.
 */
public interface TrainerCallback {
    default void onTrainBegin(TrainerState state) {}

    /**
     * Right after the optimizer update of step {@code state.globalStep()} (already counted), while the gradients
     * of {@code params} are still populated; they are zeroed after every callback has run.
     */
    default void onOptimizerStep(TrainerState state, Collection<Param> params) {}

    default void onStepEnd(TrainerState state) {}

    /** Logged values: {@code loss} (mean since the last log), {@code learning_rate}, {@code grad_norm}, ... */
    default void onLog(TrainerState state, Map<String, Double> logs) {}

    /** Evaluation metrics ({@code eval_loss}, plus whatever the evaluator returns). */
    default void onEvaluate(TrainerState state, Map<String, Double> metrics) {}

    /** A checkpoint was written (atomically) to {@code dir}. */
    default void onSave(TrainerState state, Path dir) {}

    default void onTrainEnd(TrainerState state) {}

    /** Implemented by a model that brings its own callbacks; a {@link Trainer} adds them automatically. */
    interface Provider {
        java.util.List<TrainerCallback> trainerCallbacks();
    }
}
