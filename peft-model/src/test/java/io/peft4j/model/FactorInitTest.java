package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** PiSSA and OLoRA: output unchanged at init, residual = W - s·BA, and each method's defining structure. */
class FactorInitTest {
    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(13);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    /** {@code m(x)} without autograd, intermediates freed. */
    static float[] run(Module m, NDArray x) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(x).toFloatArray();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"pissa", "pissa_niter_4", "olora"})
    void outputUnchangedResidualAndStructure(String init) {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        NDArray x = nd.randomNormal(new Shape(4, 6));
        float[] base = run(net, x);
        float[] w = net.getParameter("block.up_proj.weight").data().toFloatArray(); // (5, 6)
        PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).loraAlpha(4)
                .targetModules("up_proj").initLoraWeights(init).build());
        assertThat(run(peft, x)).containsExactly(base, within(2e-5f));
        float[] a = peft.namedParameters().get("base_model.model.block.up_proj.lora_A.default.weight").data().toFloatArray();
        float[] b = peft.namedParameters().get("base_model.model.block.up_proj.lora_B.default.weight").data().toFloatArray();
        float[] res = net.getParameter("block.up_proj.base_layer.weight").data().toFloatArray();
        double s = 4.0 / 2;
        for (int o = 0; o < 5; o++) {
            for (int i = 0; i < 6; i++) {
                double ba = b[o * 2] * a[i] + b[o * 2 + 1] * a[6 + i];
                assertThat(res[o * 6 + i]).isCloseTo((float) (w[o * 6 + i] - s * ba), within(1e-5f));
            }
        }
        if (init.startsWith("pissa")) {
            // The residual holds the minor singular directions: its rows are orthogonal to A's rows.
            for (int j = 0; j < 2; j++) {
                for (int o = 0; o < 5; o++) {
                    double dot = 0;
                    for (int i = 0; i < 6; i++) {
                        dot += res[o * 6 + i] * a[j * 6 + i];
                    }
                    assertThat(dot).as("residual row %d . A row %d", o, j).isCloseTo(0.0, within(1e-4));
                }
            }
        } else {
            // OLoRA: B = Q_r has orthonormal columns and A = R_r is upper triangular.
            for (int p = 0; p < 2; p++) {
                for (int q = 0; q < 2; q++) {
                    double dot = 0;
                    for (int o = 0; o < 5; o++) {
                        dot += b[o * 2 + p] * b[o * 2 + q];
                    }
                    assertThat(dot).isCloseTo(p == q ? 1.0 : 0.0, within(1e-5));
                }
            }
            assertThat(a[6]).isCloseTo(0f, within(1e-6f)); // R[1][0]
        }
    }
}
