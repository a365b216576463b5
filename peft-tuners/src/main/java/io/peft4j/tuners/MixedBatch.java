package io.peft4j.tuners;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * The per-row adapter names of the forward pass in progress (peft's {@code adapter_names} argument): set by
 * {@code PeftModel.forward(input, adapterNames)} around one call and read by every tuner layer on the way, so no
 * model signature has to carry it. {@link #BASE} selects the base model for a row.
 */
public final class MixedBatch {
    /** peft's name for "no adapter" in {@code adapter_names}. */
    public static final String BASE = "__base__";

    /** One call's names and the row masks built from them (once per adapter, shared by every layer). */
    private record Call(List<String> names, Map<String, NDArray> masks) {}

    private static final ThreadLocal<Call> CURRENT = new ThreadLocal<>();

    private MixedBatch() {}

    /** The adapter of each batch row for the current forward, or null outside a mixed-batch call. */
    public static List<String> current() {
        Call c = CURRENT.get();
        return c == null ? null : c.names();
    }

    /** Runs {@code body} with these per-row adapters; the masks it built are freed afterwards. */
    public static <T> T with(List<String> adapterNames, Supplier<T> body) {
        Call previous = CURRENT.get();
        Call call = new Call(List.copyOf(adapterNames), new HashMap<>());
        CURRENT.set(call);
        try {
            return body.get();
        } finally {
            call.masks().values().forEach(NDArray::close);
            if (previous == null) {
                CURRENT.remove();
            } else {
                CURRENT.set(previous);
            }
        }
    }

    /**
     * A {@code [batch, 1, ...]} 0/1 mask of the rows of the current call that use {@code adapter}, broadcastable
     * against an activation of {@code rank} dimensions.
     */
    public static NDArray rowMask(NDManager nd, String adapter, int rank) {
        Call call = CURRENT.get();
        NDArray mask = call.masks().computeIfAbsent(adapter, a -> {
            float[] m = new float[call.names().size()];
            for (int i = 0; i < m.length; i++) {
                m[i] = call.names().get(i).equals(a) ? 1f : 0f;
            }
            NDArray created = nd.create(m);
            // Owned by this call, not by the scope of whichever layer asked first.
            ai.djl.ndarray.NDScope.unregister(created);
            return created;
        });
        long[] shape = new long[rank];
        Arrays.fill(shape, 1);
        shape[0] = call.names().size();
        return mask.reshape(new Shape(shape));
    }
}
