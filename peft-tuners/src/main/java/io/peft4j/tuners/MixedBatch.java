package io.peft4j.tuners;

import java.util.List;

/**
 * The per-row adapter names of the forward pass in progress (peft's {@code adapter_names} argument): set by
 * {@code PeftModel.forward(input, adapterNames)} around one call and read by every tuner layer on the way, so no
 * model signature has to carry it. {@link #BASE} selects the base model for a row.
 */
public final class MixedBatch {
    /** peft's name for "no adapter" in {@code adapter_names}. */
    public static final String BASE = "__base__";

    private static final ThreadLocal<List<String>> CURRENT = new ThreadLocal<>();

    private MixedBatch() {}

    /** The adapter of each batch row for the current forward, or null outside a mixed-batch call. */
    public static List<String> current() {
        return CURRENT.get();
    }

    /** Runs {@code body} with these per-row adapters. */
    public static <T> T with(List<String> adapterNames, java.util.function.Supplier<T> body) {
        List<String> previous = CURRENT.get();
        CURRENT.set(List.copyOf(adapterNames));
        try {
            return body.get();
        } finally {
            if (previous == null) {
                CURRENT.remove();
            } else {
                CURRENT.set(previous);
            }
        }
    }

    /**
     * A {@code [batch, 1, ...]} 0/1 mask of the rows that use {@code adapter}, broadcastable against an activation
     * of {@code rank} dimensions.
     */
    public static ai.djl.ndarray.NDArray rowMask(ai.djl.ndarray.NDManager nd, List<String> names, String adapter,
                                                 int rank) {
        float[] m = new float[names.size()];
        for (int i = 0; i < m.length; i++) {
            m[i] = names.get(i).equals(adapter) ? 1f : 0f;
        }
        long[] shape = new long[rank];
        java.util.Arrays.fill(shape, 1);
        shape[0] = m.length;
        return nd.create(m, new ai.djl.ndarray.types.Shape(shape));
    }
}
