package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.IA3Config;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.tuners.ia3.IA3Linear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** IA³ on the small Net: output vs input scaling by hand, identity at init, merge/unmerge, clear errors. */
class IA3Test {
    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(5);
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
    void scalesOutputsOrFeedForwardInputsAndMergesThem() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        NDArray x = nd.randomNormal(new Shape(2, 6));
        float[] base = run(net, x);
        PeftModel peft = PeftModel.getPeftModel(net, IA3Config.builder()
                .targetModules("up_proj", "down_proj").feedforwardModules("down_proj").build());
        assertThat(((IA3Linear) net.getSubmodule("block.up_proj")).isFeedforward()).isFalse();
        assertThat(((IA3Linear) net.getSubmodule("block.down_proj")).isFeedforward()).isTrue();
        assertThat(run(peft, x)).containsExactly(base, within(1e-6f)); // vectors start at 1
        Param out = peft.namedParameters().get("base_model.model.block.up_proj.ia3_l.default");
        Param in = peft.namedParameters().get("base_model.model.block.down_proj.ia3_l.default");
        assertThat(out.shape()).isEqualTo(new Shape(5, 1));
        assertThat(in.shape()).isEqualTo(new Shape(1, 5));
        assertThat(peft.getNbTrainableParameters()[0]).isEqualTo(10);

        // up_proj output row 0 doubled, down_proj input 0 zeroed: compare with the base net computed by hand.
        out.setData(nd.create(new float[] {2, 1, 1, 1, 1}, new Shape(5, 1)));
        in.setData(nd.create(new float[] {0, 1, 1, 1, 1}, new Shape(1, 5)));
        Module up = net.getSubmodule("block.up_proj.base_layer");
        Module down = net.getSubmodule("block.down_proj.base_layer");
        Module head = net.getSubmodule("head");
        float[] expected;
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            NDArray h = up.forward(x).mul(nd.create(new float[] {2, 1, 1, 1, 1}));
            h = io.peft4j.nn.F.relu(h).mul(nd.create(new float[] {0, 1, 1, 1, 1}));
            expected = head.forward(down.forward(h)).toFloatArray();
        }
        float[] adapted = run(peft, x);
        assertThat(adapted).containsExactly(expected, within(1e-5f));

        float[] upW = up.param("weight").data().toFloatArray();
        peft.mergeAdapter();
        assertThat(run(peft, x)).containsExactly(adapted, within(1e-5f));
        peft.unmergeAdapter();
        assertThat(up.param("weight").data().toFloatArray()).containsExactly(upW, within(1e-6f));
    }

    @Test
    void unsupportedTargetsAndMissingDefaultsFailClearly() {
        Module withEmbedding = new Module() {
            {
                registerModule("embed_tokens", new Embedding(nd, 10, 4));
            }
        };
        assertThatThrownBy(() -> PeftModel.getPeftModel(withEmbedding, IA3Config.builder()
                .targetModules("embed_tokens").feedforwardModules().build()))
                .hasMessageContaining("embed_tokens").hasMessageContaining("not supported");
        assertThatThrownBy(() -> PeftModel.getPeftModel(new PeftModelTest.Net(nd), IA3Config.builder().build()))
                .hasMessageContaining("target_modules");
    }
}
