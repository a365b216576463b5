package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.training.GradientCollector;
import io.peft4j.nn.F;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;

import java.util.Collection;
import java.util.function.Supplier;

/**
 * One optimisation step with flat memory: the forward pass, loss and backward run inside an {@link NDScope}
 * (every intermediate is freed when it closes), the optimizer update runs after it.
 */
public final class TrainStep {
    private TrainStep() {}

    /** Loss value and gradient norm of one step. */
    public record Result(float loss, float gradNorm) {}

    /**
     * @param loss computes the scalar loss (called with autograd recording)
     * @param params the parameters to update (frozen ones are skipped)
     */
    public static Result run(Supplier<NDArray> loss, AdamW optimizer, Collection<Param> params) {
        return run(loss, optimizer, params, null);
    }

    /**
     * @param afterUpdate runs after the optimizer update while the gradients are still there (null: nothing), e.g.
     *                    {@code () -> peft.updateAndAllocate(step)} for AdaLoRA
     */
    public static Result run(Supplier<NDArray> loss, AdamW optimizer, Collection<Param> params, Runnable afterUpdate) {
        float value = backward(loss, 1f, "");
        float norm = optimizer.step(params, afterUpdate);
        return new Result(value, norm);
    }

    /**
     * Forward and backward inside an {@link NDScope}: gradients of {@code scale · loss} accumulate on the
     * parameters, every intermediate is freed. A non-finite loss stops before any gradient is written.
     *
     * @param where appended to the error message (e.g. {@code " at step 7"})
     * @return the unscaled loss value
     */
    public static float backward(Supplier<NDArray> loss, float scale, String where) {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            try (GradientCollector gc = Torch.engine().newGradientCollector()) {
                NDArray l = loss.get();
                float value = l.getFloat();
                if (!Float.isFinite(value)) {
                    throw new ArithmeticException("loss is " + value + where + "; stopping before the update");
                }
                gc.backward(scale == 1f ? l : F.mul(l, scale));
                return value;
            }
        }
    }
}
