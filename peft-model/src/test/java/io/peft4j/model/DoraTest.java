package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** DoRA on a small Linear network: identity at init, the row-norm formula, training, merge/unmerge. */
class DoraTest {
    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(3);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private static float[] run(Module m, NDArray x) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(x).toFloatArray();
        }
    }

    @Test
    void doraStartsAsTheBaseComputesTheRowNormFormulaAndMergesExactly() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        NDArray x = nd.randomNormal(new Shape(3, 6));
        float[] base = run(net, x);
        float[] w = net.getParameter("block.up_proj.weight").data().toFloatArray(); // (5, 6)
        PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).loraAlpha(4)
                .targetModules("up_proj").useDora(true).build());
        Map<String, Param> p = peft.namedParameters();
        Param m = p.get("base_model.model.block.up_proj.lora_magnitude_vector.default.weight");
        // m starts as the row norms of W (B = 0)
        for (int o = 0; o < 5; o++) {
            double n = 0;
            for (int i = 0; i < 6; i++) {
                n += w[o * 6 + i] * w[o * 6 + i];
            }
            assertThat(m.data().toFloatArray()[o]).isCloseTo((float) Math.sqrt(n), within(1e-5f));
        }
        assertThat(run(peft, x)).containsExactly(base, within(1e-5f));
        assertThat(peft.tuner().adapterStateDict("default", "base_model.").keySet())
                .contains("base_model.model.block.up_proj.lora_magnitude_vector");

        // train a few steps: m, A and B all move, the base weight does not
        float[] m0 = m.data().toFloatArray();
        AdamW opt = AdamW.builder().lr(0.05f).build();
        NDArray target = nd.randomNormal(new Shape(3, 3));
        for (int i = 0; i < 5; i++) {
            TrainStep.run(() -> peft.forward(x).sub(target).square().mean(), opt, peft.trainableParameters());
        }
        assertThat(m.data().toFloatArray()).isNotEqualTo(m0);
        assertThat(net.getParameter("block.up_proj.base_layer.weight").data().toFloatArray()).isEqualTo(w);

        float[] adapted = run(peft, x);
        peft.mergeAdapter();
        assertThat(run(peft, x)).containsExactly(adapted, within(1e-5f));
        peft.unmergeAdapter();
        assertThat(net.getParameter("block.up_proj.base_layer.weight").data().toFloatArray())
                .containsExactly(w, within(1e-5f));
        assertThat(run(peft, x)).containsExactly(adapted, within(1e-5f));
    }

    @Test
    void unsupportedDoraCombinationsFailClearly() {
        assertThatThrownBy(() -> PeftModel.getPeftModel(new PeftModelTest.Net(nd), LoraConfig.builder().r(2)
                .targetModules("up_proj").useDora(true).loraBias(true).build()))
                .hasMessageContaining("lora_bias");
        Module withEmbedding = new Module() {
            {
                registerModule("embed_tokens", new Embedding(nd, 10, 4));
            }
        };
        assertThatThrownBy(() -> PeftModel.getPeftModel(withEmbedding, LoraConfig.builder().r(2)
                .targetModules("embed_tokens").useDora(true).build()))
                .hasMessageContaining("Embedding").hasMessageContaining("embed_tokens");
    }
}
