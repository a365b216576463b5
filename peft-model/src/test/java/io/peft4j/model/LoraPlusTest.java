package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class LoraPlusTest {
    /** Adam's first step moves every weight with a non-zero gradient by about lr (the update is lr * g / |g|). */
    @Test
    void bMovesRatioTimesFurtherThanAOnTheFirstAdamStep() {
        Torch.manualSeed(11);
        try (NDManager nd = Torch.newManager()) {
            PeftModelTest.Net net = new PeftModelTest.Net(nd);
            PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).loraAlpha(4)
                    .targetModules("up_proj").build());
            Param a = peft.namedParameters().get("base_model.model.block.up_proj.lora_A.default.weight");
            Param b = peft.namedParameters().get("base_model.model.block.up_proj.lora_B.default.weight");
            // Non-zero B, so A gets a gradient on the first step too.
            b.setData(nd.randomNormal(0f, 0.1f, b.shape(), DataType.FLOAT32));
            float[] a0 = a.data().toFloatArray();
            float[] b0 = b.data().toFloatArray();
            NDArray x = nd.randomNormal(new Shape(4, 6));
            NDArray y = nd.randomNormal(new Shape(4, 3));
            AdamW opt = LoraPlus.optimizer(peft, 1e-3f, 16f, 0f, 0f);
            TrainStep.run(() -> peft.forward(x).sub(y).square().mean(), opt, peft.trainableParameters());
            assertThat(maxAbsStep(a0, a.data().toFloatArray())).isCloseTo(1e-3f, within(1e-5f));
            assertThat(maxAbsStep(b0, b.data().toFloatArray())).isCloseTo(16e-3f, within(1.6e-4f));
        }
        assertThatThrownBy(() -> LoraPlus.optimizer(null, 1e-3f, 0f, 0f, 0f)).hasMessageContaining("ratio");
    }

    private static float maxAbsStep(float[] before, float[] after) {
        float m = 0;
        for (int i = 0; i < before.length; i++) {
            m = Math.max(m, Math.abs(after[i] - before[i]));
        }
        return m;
    }
}
