package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;

/**
 * peft's {@code DoraLinearLayer}: holds DoRA's magnitude vector {@code m} (parameter {@code weight}, shape
 * {@code (out,)}) and computes the row norm {@code ‖W + s·BA‖} it divides by. The norm is detached (the paper's
 * "treat the norm as a constant"), so only {@code m}, A and B receive gradients.
 */
public final class DoraLinearLayer extends Module {
    DoraLinearLayer(NDArray magnitude) {
        registerParameter("weight", magnitude);
    }

    public Param magnitude() {
        return param("weight");
    }

    /**
     * {@code ‖W + scaling·ΔW‖} over the input dimension, no grad.
     *
     * @param weightOutIn the base weight as {@code (out, in)}
     * @param deltaOutIn an unscaled or scaled update as {@code (out, in)}
     */
    static NDArray weightNorm(NDArray weightOutIn, NDArray deltaOutIn, float scaling) {
        try (NoGrad ignored = NoGrad.enter()) {
            NDArray w = weightOutIn.add(F.mul(deltaOutIn, scaling));
            return w.square().sum(new int[] {1}).sqrt();
        }
    }
}
