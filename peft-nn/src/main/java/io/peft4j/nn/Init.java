package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Deferred parameter initialisation, like transformers' {@code no_init_weights} when loading a checkpoint: inside a
 * {@link Deferral}, layers allocate their weights uninitialised ({@code torch.empty}: no page is written, so a
 * tensor that the checkpoint replaces never costs resident memory or random-number time) and the models' own
 * {@code _init_weights} skip them. After loading, {@link Deferral#remaining} names what the checkpoint did not
 * provide, which the model then initialises; nothing uninitialised may stay in a model.
 */
public final class Init {
    private static final ThreadLocal<Deferral> CURRENT = new ThreadLocal<>();

    private Init() {}

    /** Starts deferring initialisation on this thread until the returned scope is closed. */
    public static Deferral defer() {
        Deferral d = new Deferral(CURRENT.get());
        CURRENT.set(d);
        return d;
    }

    /**
     * An uninitialised float32 tensor recorded by the current deferral, or null when none is active (the caller then
     * initialises as usual).
     */
    public static NDArray deferred(NDManager manager, Shape shape) {
        Deferral d = CURRENT.get();
        if (d == null || d.closed) {
            return null;
        }
        NDArray a = manager.create(shape, DataType.FLOAT32);
        d.arrays.add(a);
        return a;
    }

    /** True when {@code a} was allocated uninitialised by a deferral that is still open on this thread. */
    public static boolean isDeferred(NDArray a) {
        for (Deferral d = CURRENT.get(); d != null; d = d.parent) {
            if (d.arrays.contains(a)) {
                return true;
            }
        }
        return false;
    }

    /** A scope of deferred initialisation; also answers, after it is closed, what is still uninitialised. */
    public static final class Deferral implements AutoCloseable {
        private final Deferral parent;
        private final Set<NDArray> arrays = Collections.newSetFromMap(new IdentityHashMap<>());
        private boolean closed;

        private Deferral(Deferral parent) {
            this.parent = parent;
        }

        /** True when {@code a} was allocated uninitialised in this scope. */
        public boolean isDeferred(NDArray a) {
            return arrays.contains(a);
        }

        /** Names of the parameters and buffers of {@code model} still holding an array this scope left uninitialised. */
        public List<String> remaining(Module model) {
            List<String> out = new ArrayList<>();
            for (Map.Entry<String, Param> e : model.namedStateEntries().entrySet()) {
                if (arrays.contains(e.getValue().data())) {
                    out.add(e.getKey());
                }
            }
            return out;
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                if (CURRENT.get() == this) {
                    if (parent == null) {
                        CURRENT.remove();
                    } else {
                        CURRENT.set(parent);
                    }
                }
            }
        }
    }
}
