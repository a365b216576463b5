package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;

import ai.djl.ndarray.NDManager;

import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (decoupled weight decay, as {@code torch.optim.AdamW}) over peft4j {@link Param}s, with optional
 * global-norm gradient clipping (Hugging Face {@code max_grad_norm}) and parameter groups.
 *
 * <p>The update runs libtorch's fused Adam kernel through DJL's JNI; the moments and per-parameter step counts
 * are held here, so they can be saved and restored ({@link #stateDict}, {@link #loadStateDict}) and a resumed run
 * continues exactly. State lives in each weight's manager and is created on the first update, so {@link #step}
 * must run outside any {@code NDScope}. {@link #step} zeroes the gradients after the update because libtorch
 * accumulates them; {@link #update} leaves them for hooks that read them (AdaLoRA's importance scores).
 */
public final class AdamW {
    private final Builder settings;
    private final float maxGradNorm;
    /** Parameter groups with their own learning rate / weight decay (LoRA+): {lr, weightDecay}. */
    private final Map<Param, float[]> groups = new IdentityHashMap<>();
    private final Map<Param, State> state = new IdentityHashMap<>();
    /** The learning-rate schedule's current multiplier, applied to every group (torch's LambdaLR). */
    private double lrFactor = 1.0;

    /** First and second moments and the number of updates of one parameter. */
    private static final class State {
        NDArray mean;
        NDArray variance;
        long step;
    }

    private AdamW(Builder b) {
        Torch.engine();
        this.settings = b;
        this.maxGradNorm = b.maxGradNorm;
    }

    /**
     * Gives these parameters their own learning rate and weight decay (a torch param group), e.g. LoRA+'s
     * faster B matrices. Call before the first step.
     */
    public AdamW paramGroup(Collection<Param> params, float lr, float weightDecay) {
        for (Param p : params) {
            groups.put(p, new float[] {lr, weightDecay});
        }
        return this;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The base learning rate (before the schedule's factor). */
    public float lr() {
        return settings.lr;
    }

    /** Sets the schedule multiplier for the next updates: each group's learning rate is its own times this. */
    public void setLrFactor(double factor) {
        if (!(factor >= 0) || Double.isInfinite(factor)) {
            throw new IllegalArgumentException("learning-rate factor must be finite and >= 0, got " + factor);
        }
        lrFactor = factor;
    }

    public double lrFactor() {
        return lrFactor;
    }

    /**
     * Applies one update to every parameter that requires grad, then zeroes gradients.
     *
     * @return the global L2 norm of the gradients before clipping
     */
    public float step(Collection<Param> params) {
        try {
            return update(params);
        } finally {
            zeroGrad(params);
        }
    }

    /**
     * As {@link #step(Collection)}, running {@code afterUpdate} after the update and before gradients are zeroed:
     * the point where torch code reads {@code p.grad} of the updated weights (peft's AdaLoRA
     * {@code update_and_allocate}).
     */
    public float step(Collection<Param> params, Runnable afterUpdate) {
        try {
            float norm = update(params);
            if (afterUpdate != null) {
                afterUpdate.run();
            }
            return norm;
        } finally {
            zeroGrad(params);
        }
    }

    /** Same as {@link #step} but leaves the gradients in place; call {@link #zeroGrad} when done with them. */
    public float update(Collection<Param> params) {
        List<Param> live = new ArrayList<>();
        List<NDArray> grads = new ArrayList<>();
        for (Param p : params) {
            if (!p.requiresGrad()) {
                continue;
            }
            live.add(p);
            grads.add(p.data().getGradient());
        }
        try (NoGrad ignored = NoGrad.enter()) {
            float total = globalNorm(grads);
            if (maxGradNorm > 0 && total > maxGradNorm) {
                float coef = maxGradNorm / (total + 1e-6f);
                for (NDArray g : grads) {
                    g.muli(coef);
                }
            }
            for (int i = 0; i < live.size(); i++) {
                apply(live.get(i), grads.get(i));
            }
            return total;
        } finally {
            grads.forEach(NDArray::close);
        }
    }

    private void apply(Param p, NDArray grad) {
        NDArray w = p.data();
        State st = state.computeIfAbsent(p, k -> new State());
        if (st.mean == null) {
            st.mean = w.getManager().zeros(w.getShape(), w.getDataType());
            st.variance = w.getManager().zeros(w.getShape(), w.getDataType());
        } else if (!st.mean.getShape().equals(w.getShape())) {
            throw new IllegalStateException("AdamW: parameter " + p.id() + " changed shape from " + st.mean.getShape()
                    + " to " + w.getShape() + " after its first update; build a new optimizer");
        }
        st.step++;
        float[] group = groups.get(p);
        float lr = (float) ((group != null ? group[0] : settings.lr) * lrFactor);
        float wd = group != null ? group[1] : settings.weightDecay;
        double coef1 = 1.0 - Math.pow(settings.beta1, st.step);
        double coef2 = 1.0 - Math.pow(settings.beta2, st.step);
        float lrBiasCorrection = (float) (lr * Math.sqrt(coef2) / coef1);
        JniUtils.adamUpdate((PtNDArray) w, (PtNDArray) grad, (PtNDArray) st.mean, (PtNDArray) st.variance, lr,
                lrBiasCorrection, wd, 1f, -1f, settings.beta1, settings.beta2, settings.eps, true);
    }

    /** Zeroes the gradients of these parameters (libtorch accumulates them across backward passes). */
    public static void zeroGrad(Collection<Param> params) {
        for (Param p : params) {
            if (p.requiresGrad() && p.data().hasGradient()) {
                JniUtils.zeroGrad((PtNDArray) p.data());
            }
        }
    }

    /**
     * The optimizer state of the named parameters that have been updated: {@code <name>.exp_avg},
     * {@code <name>.exp_avg_sq} (torch's names) and {@code <name>.step} (a 1-element INT64). The arrays are copies
     * in {@code manager}.
     */
    public Map<String, NDArray> stateDict(Map<String, Param> named, NDManager manager) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        for (Map.Entry<String, Param> e : named.entrySet()) {
            State st = state.get(e.getValue());
            if (st == null || st.mean == null) {
                continue;
            }
            out.put(e.getKey() + ".exp_avg", st.mean.duplicate());
            out.put(e.getKey() + ".exp_avg_sq", st.variance.duplicate());
            out.put(e.getKey() + ".step", manager.create(new long[] {st.step}));
        }
        for (NDArray a : out.values()) {
            a.attach(manager);
        }
        return out;
    }

    /** Restores what {@link #stateDict} returned; every named parameter with saved state must match its shape. */
    public void loadStateDict(Map<String, Param> named, Map<String, NDArray> tensors) {
        for (Map.Entry<String, Param> e : named.entrySet()) {
            NDArray mean = tensors.get(e.getKey() + ".exp_avg");
            if (mean == null) {
                continue;
            }
            NDArray variance = tensors.get(e.getKey() + ".exp_avg_sq");
            NDArray step = tensors.get(e.getKey() + ".step");
            NDArray w = e.getValue().data();
            if (variance == null || step == null) {
                throw new IllegalArgumentException("optimizer state for " + e.getKey() + " is incomplete: expected "
                        + e.getKey() + ".exp_avg, .exp_avg_sq and .step");
            }
            if (!mean.getShape().equals(w.getShape()) || !variance.getShape().equals(w.getShape())) {
                throw new IllegalArgumentException("optimizer state for " + e.getKey() + " has shape " + mean.getShape()
                        + " but the parameter has " + w.getShape());
            }
            State st = state.computeIfAbsent(e.getValue(), k -> new State());
            if (st.mean != null) {
                st.mean.close();
                st.variance.close();
            }
            st.mean = w.getManager().create(mean.toFloatArray(), w.getShape());
            st.variance = w.getManager().create(variance.toFloatArray(), w.getShape());
            st.step = step.toLongArray()[0];
        }
    }

    /**
     * Global L2 norm of a set of gradients: one native norm per tensor (no squared copy), combined natively,
     * and a single read back to Java.
     */
    static float globalNorm(List<NDArray> grads) {
        if (grads.isEmpty()) {
            return 0f;
        }
        NDList norms = new NDList(grads.size());
        try {
            for (NDArray g : grads) {
                norms.add(g.norm());
            }
            try (NDArray all = NDArrays.stack(norms); NDArray total = all.norm()) {
                return total.getFloat();
            }
        } finally {
            norms.close();
        }
    }

    /** Builder for {@link AdamW}; defaults follow {@code torch.optim.AdamW} except weight decay 0 (HF Trainer). */
    public static final class Builder {
        private float lr = 1e-3f;
        private float beta1 = 0.9f;
        private float beta2 = 0.999f;
        private float eps = 1e-8f;
        private float weightDecay = 0f;
        private float maxGradNorm = 0f;

        public Builder lr(float v) {
            lr = v;
            return this;
        }

        public Builder betas(float b1, float b2) {
            beta1 = b1;
            beta2 = b2;
            return this;
        }

        public Builder eps(float v) {
            eps = v;
            return this;
        }

        public Builder weightDecay(float v) {
            weightDecay = v;
            return this;
        }

        /** Clip gradients to this global L2 norm; 0 disables. */
        public Builder maxGradNorm(float v) {
            maxGradNorm = v;
            return this;
        }

        public AdamW build() {
            return new AdamW(this);
        }
    }
}
