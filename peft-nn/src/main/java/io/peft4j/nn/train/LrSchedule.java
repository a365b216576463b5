package io.peft4j.nn.train;

import java.util.Locale;

/**
 * Learning-rate schedules as {@code transformers.get_scheduler} defines them: a multiplier of the base learning rate
 * as a function of the optimizer step (0 for the first update, so with warm-up the first update has learning rate 0,
 * exactly as HF's {@code LambdaLR}).
 */
public enum LrSchedule {
    /** {@code 1}. */
    CONSTANT,
    /** Linear warm-up from 0, then {@code 1}. */
    CONSTANT_WITH_WARMUP,
    /** Linear warm-up, then linear decay to 0 at {@code total}. */
    LINEAR,
    /** Linear warm-up, then half a cosine wave down to 0 at {@code total}. */
    COSINE;

    /**
     * @param step   the optimizer step (0-based)
     * @param warmup warm-up steps
     * @param total  total optimizer steps of the run
     */
    public double factor(long step, long warmup, long total) {
        if (this != CONSTANT && step < warmup) {
            return (double) step / Math.max(1, warmup);
        }
        return switch (this) {
            case CONSTANT, CONSTANT_WITH_WARMUP -> 1.0;
            case LINEAR -> Math.max(0.0, (double) (total - step) / Math.max(1, total - warmup));
            case COSINE -> {
                double progress = (double) (step - warmup) / Math.max(1, total - warmup);
                yield Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * progress)));
            }
        };
    }

    /** HF's name ({@code linear}, {@code cosine}, {@code constant}, {@code constant_with_warmup}). */
    public String hfName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses HF's name. */
    public static LrSchedule fromHfName(String name) {
        for (LrSchedule s : values()) {
            if (s.hfName().equals(name)) {
                return s;
            }
        }
        throw new IllegalArgumentException("unknown lr scheduler '" + name + "' (expected linear, cosine, constant or "
                + "constant_with_warmup)");
    }
}
