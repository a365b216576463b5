package io.peft4j.nn.train;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where a {@link Trainer} run stands (HF's {@code TrainerState}): read by callbacks, saved in every checkpoint as
 * {@code trainer_state.json}.
 */
public final class TrainerState {
    long globalStep;
    long totalSteps;
    long epoch;
    long tokensSeen;
    double lastLoss = Double.NaN;
    double lastLearningRate;
    double lastGradNorm;
    final List<Map<String, Double>> logHistory = new ArrayList<>();

    /** Optimizer steps done. */
    public long globalStep() {
        return globalStep;
    }

    /** Optimizer steps the run will make. */
    public long totalSteps() {
        return totalSteps;
    }

    /** The (0-based) epoch the current step belongs to. */
    public long epoch() {
        return epoch;
    }

    /** Training tokens (or rows, if the loss counts no tokens) consumed so far. */
    public long tokensSeen() {
        return tokensSeen;
    }

    /** Mean training loss of the last step (over its accumulated micro-batches). */
    public double lastLoss() {
        return lastLoss;
    }

    /** The learning rate the last step used (base rate times the schedule's factor). */
    public double lastLearningRate() {
        return lastLearningRate;
    }

    /** Global gradient norm of the last step, before clipping. */
    public double lastGradNorm() {
        return lastGradNorm;
    }

    /** Every logged and evaluated record so far, oldest first. */
    public List<Map<String, Double>> logHistory() {
        return Collections.unmodifiableList(logHistory);
    }

    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("global_step", globalStep);
        m.put("max_steps", totalSteps);
        m.put("epoch", epoch);
        m.put("tokens_seen", tokensSeen);
        m.put("log_history", logHistory);
        return m;
    }
}
