package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class TrainStepTest {

    static final class Mlp extends Module {
        Mlp(NDManager m) {
            registerModule("fc1", new Linear(m, 8, 16, true));
            registerModule("fc2", new Linear(m, 16, 3, true));
        }

        @Override
        public NDArray forward(NDArray x) {
            return call("fc2", F.relu(call("fc1", x)));
        }
    }

    @Test
    void lossDecreasesFrozenWeightsStayBitIdenticalAndMemoryIsFlat() {
        Torch.manualSeed(1);
        try (NDManager m = Torch.newManager()) {
            Mlp mlp = new Mlp(m);
            mlp.getSubmodule("fc1").requiresGrad(false);
            float[] frozenBefore = mlp.getParameter("fc1.weight").data().toFloatArray();
            NDArray x = m.randomNormal(new Shape(32, 8));
            NDArray y = m.randomInteger(0, 3, new Shape(32), DataType.INT64);
            AdamW opt = AdamW.builder().lr(1e-2f).maxGradNorm(1f).build();
            List<Param> params = new ArrayList<>(mlp.namedParameters().values());

            float first = 0;
            float last = 0;
            long liveAfterWarmup = 0;
            for (int step = 0; step < 1000; step++) {
                TrainStep.Result r = TrainStep.run(() -> F.crossEntropy(mlp.forward(x), y, -100), opt, params);
                if (step == 0) {
                    first = r.loss();
                }
                if (step == 5) {
                    liveAfterWarmup = m.getManagedArrays().size();
                }
                last = r.loss();
            }
            assertThat(last).isLessThan(first * 0.5f);
            assertThat(mlp.getParameter("fc1.weight").data().toFloatArray()).containsExactly(frozenBefore);
            assertThat((long) m.getManagedArrays().size()).isEqualTo(liveAfterWarmup);
        }
    }

    @Test
    void gradientsDoNotAccumulateAcrossSteps() {
        try (NDManager m = Torch.newManager()) {
            Param w = new Param(m.ones(new Shape(2)));
            NDArray x = m.create(new float[] {1f, 2f});
            // lr 0 so the weight is unchanged; a zeroed gradient gives the same norm each step.
            AdamW opt = AdamW.builder().lr(0f).build();
            float n1 = TrainStep.run(() -> w.data().mul(x).sum(), opt, List.of(w)).gradNorm();
            float n2 = TrainStep.run(() -> w.data().mul(x).sum(), opt, List.of(w)).gradNorm();
            assertThat(n1).isCloseTo((float) Math.sqrt(5), org.assertj.core.data.Offset.offset(1e-6f));
            assertThat(n2).isEqualTo(n1);
        }
    }

    @Test
    void noGradDisablesRecording() {
        try (NDManager m = Torch.newManager()) {
            Param w = new Param(m.ones(new Shape(2)));
            try (NoGrad ignored = NoGrad.enter(); NDArray out = w.data().mul(2)) {
                assertThat(out.hasGradient()).isFalse();
            }
        }
    }
}
