package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.tracker.ParameterTracker;
import ai.djl.training.tracker.Tracker;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * AdamW (decoupled weight decay, as {@code torch.optim.AdamW}) over peft4j {@link Param}s, with optional
 * global-norm gradient clipping (Hugging Face {@code max_grad_norm}).
 *
 * <p>The update runs DJL's fused native kernel. State lives in each weight's manager and is created on the
 * first update, so {@link #step} must run outside any {@code NDScope}. Gradients are zeroed after the step
 * because libtorch accumulates them.
 */
public final class AdamW {
    private final ai.djl.training.optimizer.AdamW delegate;
    private final float maxGradNorm;
    private final Builder settings;
    /** Parameter groups with their own learning rate / weight decay (LoRA+), one DJL optimizer each. */
    private final java.util.Map<Param, ai.djl.training.optimizer.AdamW> grouped = new java.util.IdentityHashMap<>();

    private AdamW(Builder b) {
        Torch.engine();
        this.settings = b;
        this.delegate = delegate(b.lrTracker != null ? b.lrTracker : Tracker.fixed(b.lr), b.weightDecay);
        this.maxGradNorm = b.maxGradNorm;
    }

    private ai.djl.training.optimizer.AdamW delegate(ParameterTracker lr, float weightDecay) {
        return ai.djl.training.optimizer.AdamW.builder()
                .optLearningRateTracker(lr)
                .optBeta1(settings.beta1)
                .optBeta2(settings.beta2)
                .optEpsilon(settings.eps)
                .optWeightDecays(weightDecay)
                .build();
    }

    /**
     * Gives these parameters their own learning rate and weight decay (a torch param group), e.g. LoRA+'s
     * faster B matrices. Call before the first step.
     */
    public AdamW paramGroup(Collection<Param> params, float lr, float weightDecay) {
        ai.djl.training.optimizer.AdamW d = delegate(Tracker.fixed(lr), weightDecay);
        for (Param p : params) {
            grouped.put(p, d);
        }
        return this;
    }

    public static Builder builder() {
        return new Builder();
    }

    /**
     * Applies one update to every parameter that requires grad and has a gradient, then zeroes gradients.
     *
     * @return the global L2 norm of the gradients before clipping
     */
    public float step(Collection<Param> params) {
        return step(params, null);
    }

    /**
     * As {@link #step(Collection)}, running {@code afterUpdate} after the update and before gradients are zeroed:
     * the point where torch code reads {@code p.grad} of the updated weights (peft's AdaLoRA
     * {@code update_and_allocate}). DJL's fused update clears the gradient it consumes, so with a hook the
     * gradients are copied first and put back for it.
     */
    public float step(Collection<Param> params, Runnable afterUpdate) {
        List<Param> live = new ArrayList<>();
        List<NDArray> grads = new ArrayList<>();
        for (Param p : params) {
            if (!p.requiresGrad()) {
                continue;
            }
            NDArray g = p.data().getGradient();
            live.add(p);
            grads.add(g);
        }
        try (NoGrad ignored = NoGrad.enter()) {
            float total = globalNorm(grads);
            if (maxGradNorm > 0 && total > maxGradNorm) {
                float coef = maxGradNorm / (total + 1e-6f);
                for (NDArray g : grads) {
                    g.muli(coef);
                }
            }
            List<NDArray> kept = afterUpdate == null ? List.of() : grads.stream().map(NDArray::duplicate).toList();
            try {
                for (int i = 0; i < live.size(); i++) {
                    grouped.getOrDefault(live.get(i), delegate).update(live.get(i).id(), live.get(i).data(), grads.get(i));
                }
                if (afterUpdate != null) {
                    for (int i = 0; i < grads.size(); i++) {
                        grads.get(i).muli(0f).addi(kept.get(i));
                    }
                    afterUpdate.run();
                }
            } finally {
                kept.forEach(NDArray::close);
            }
            return total;
        } finally {
            for (int i = 0; i < live.size(); i++) {
                JniUtils.zeroGrad((PtNDArray) live.get(i).data());
                grads.get(i).close();
            }
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
        private ParameterTracker lrTracker;
        private float beta1 = 0.9f;
        private float beta2 = 0.999f;
        private float eps = 1e-8f;
        private float weightDecay = 0f;
        private float maxGradNorm = 0f;

        public Builder lr(float v) {
            lr = v;
            return this;
        }

        /** A learning-rate schedule (e.g. DJL's warm-up/linear trackers); overrides {@link #lr}. */
        public Builder lrSchedule(ParameterTracker v) {
            lrTracker = v;
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
