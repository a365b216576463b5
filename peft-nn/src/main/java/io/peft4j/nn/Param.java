package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A trainable tensor: an NDArray, a requires-grad flag and a stable id that keys optimizer state.
 *
 * <p>The array is replaced, never mutated through this handle's identity, so tied parameters (the same
 * {@code Param} registered under two names) stay tied when a state dict is loaded.
 */
public final class Param {
    private static final AtomicLong IDS = new AtomicLong();

    private final String id;
    private NDArray data;
    private boolean requiresGrad;

    public Param(NDArray data, boolean requiresGrad) {
        this.id = "p" + IDS.incrementAndGet();
        setData(data);
        requiresGrad(requiresGrad);
    }

    /** A trainable parameter. */
    public Param(NDArray data) {
        this(data, true);
    }

    public String id() {
        return id;
    }

    public NDArray data() {
        return data;
    }

    public Shape shape() {
        return data.getShape();
    }

    public long numel() {
        return data.getShape().size();
    }

    public boolean requiresGrad() {
        return requiresGrad;
    }

    /** Sets the flag and attaches or detaches autograd on the array. */
    public Param requiresGrad(boolean flag) {
        if (flag && !data.getDataType().isFloating()) {
            // torch refuses too ("only Tensors of floating point dtype can require gradients"), less clearly
            throw new IllegalArgumentException("a " + data.getDataType() + " parameter " + data.getShape()
                    + " cannot require grad" + (data.getDataType() == ai.djl.ndarray.types.DataType.UINT8
                    ? " (a 4-bit Linear4bit weight is frozen; Quantization.dequantize the model to train it)" : ""));
        }
        this.requiresGrad = flag;
        data.setRequiresGradient(flag);
        return this;
    }

    /**
     * Replaces the array (closing the old one). The new array is detached from any {@code NDScope} so a
     * parameter created or loaded during a step outlives that step.
     */
    public void setData(NDArray newData) {
        NDScope.unregister(newData);
        NDArray old = this.data;
        this.data = newData;
        if (old != null && old != newData) {
            old.close();
        }
        if (requiresGrad) {
            newData.setRequiresGradient(true);
        }
    }

    @Override
    public String toString() {
        return "Param" + data.getShape() + (requiresGrad ? " trainable" : " frozen");
    }
}
