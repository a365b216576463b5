package io.peft4j.model;

import io.peft4j.nn.Param;
import io.peft4j.nn.train.AdamW;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * LoRA+ (peft's {@code create_loraplus_optimizer}): B matrices learn {@code loraplus_lr_ratio} times faster than
 * A. As in peft, the fast group holds every trainable parameter whose name contains {@code lora_B} or that is
 * one-dimensional (biases, DoRA magnitudes); biases in it get no weight decay. peft's separate embedding group
 * never matches anything (it tests the parameter, not its module, against the Embedding class), so embedding
 * LoRA tensors train at the base rate here too.
 */
public final class LoraPlus {
    private LoraPlus() {}

    /**
     * @param lr learning rate of group A (everything not in the fast group)
     * @param ratio {@code loraplus_lr_ratio}, the fast group's learning-rate multiplier (peft suggests 2^4)
     */
    public static AdamW optimizer(PeftModel peft, float lr, float ratio, float weightDecay, float maxGradNorm) {
        if (!(ratio > 0)) {
            throw new IllegalArgumentException("loraplus_lr_ratio must be > 0, got " + ratio);
        }
        List<Param> fast = new ArrayList<>();
        List<Param> fastNoDecay = new ArrayList<>();
        for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
            Param p = e.getValue();
            if (!p.requiresGrad()) {
                continue;
            }
            if (e.getKey().contains("lora_B") || p.shape().dimension() == 1) {
                (e.getKey().contains("bias") ? fastNoDecay : fast).add(p);
            }
        }
        AdamW opt = AdamW.builder().lr(lr).weightDecay(weightDecay).maxGradNorm(maxGradNorm).build();
        opt.paramGroup(fast, lr * ratio, weightDecay);
        opt.paramGroup(fastNoDecay, lr * ratio, 0f);
        return opt;
    }
}
