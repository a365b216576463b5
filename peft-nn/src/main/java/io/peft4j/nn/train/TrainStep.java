package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.training.GradientCollector;
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
        float value;
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            try (GradientCollector gc = Torch.engine().newGradientCollector()) {
                NDArray l = loss.get();
                value = l.getFloat();
                if (!Float.isFinite(value)) {
                    throw new ArithmeticException("loss is " + value + "; stopping before the update");
                }
                gc.backward(l);
            }
        }
        float norm = optimizer.step(params, afterUpdate);
        return new Result(value, norm);
    }
}
