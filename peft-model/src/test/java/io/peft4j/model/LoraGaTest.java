package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.LoraGAConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.tuners.lora.LoraGA;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.SingularOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** LoRA-GA on a small MLP: residual init, the gradient's singular vectors, one layer per pass, errors. */
class LoraGaTest {
    NDManager nd;
    NDArray[] xs;
    NDArray[] ys;
    @TempDir
    Path tmp;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(17);
        nd = Torch.newManager();
        xs = new NDArray[] {nd.randomNormal(new Shape(8, 6)), nd.randomNormal(new Shape(8, 6))};
        ys = new NDArray[] {nd.randomNormal(new Shape(8, 3)), nd.randomNormal(new Shape(8, 3))};
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private IntFunction<NDArray> loss(Module net) {
        return i -> net.forward(xs[i]).sub(ys[i]).square().mean();
    }

    private static LoraConfig.Builder config(LoraGAConfig ga, String... targets) {
        return LoraConfig.builder().r(2).loraAlpha(4).targetModules(targets).initLoraWeights("lora_ga").loraGaConfig(ga);
    }

    private static float[] run(Module m, NDArray x) {
        return FactorInitTest.run(m, x);
    }

    private static float[] param(Module m, String path) {
        return m.getParameter(path).data().toFloatArray();
    }

    /** The average gradient of the loss over both batches, by plain autograd (independent of LoraGA). */
    private float[] gradient(Module net, String weight) {
        Param w = net.getParameter(weight);
        net.requiresGrad(false);
        w.requiresGrad(true);
        for (int i = 0; i < xs.length; i++) {
            try (NDScope s = new NDScope(); GradientCollector gc = Torch.engine().newGradientCollector()) {
                s.suppressNotUsedWarning();
                gc.backward(loss(net).apply(i));
            }
        }
        float[] g;
        try (NDArray grad = w.data().getGradient()) {
            g = grad.toFloatArray();
        }
        for (int i = 0; i < g.length; i++) {
            g[i] /= xs.length;
        }
        return g;
    }

    /** Descending SVD {U, Vt} of a row-major matrix. */
    private static DMatrixRMaj[] svd(float[] g, int rows, int cols) {
        DMatrixRMaj m = new DMatrixRMaj(rows, cols);
        for (int i = 0; i < g.length; i++) {
            m.data[i] = g[i];
        }
        SingularValueDecomposition_F64<DMatrixRMaj> d = DecompositionFactory_DDRM.svd(rows, cols, true, true, true);
        assertThat(d.decompose(m)).isTrue();
        DMatrixRMaj u = d.getU(null, false);
        DMatrixRMaj w = d.getW(null);
        DMatrixRMaj vt = d.getV(null, true);
        SingularOps_DDRM.descendingOrder(u, false, w, vt, true);
        return new DMatrixRMaj[] {u, vt};
    }

    @Test
    void stableArB2rTakesTheGradientsSingularVectorsAndKeepsTheOutput() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        float[] g = gradient(net.deepCopy(), "block.up_proj.weight"); // (5, 6)
        float[] w = param(net, "block.up_proj.weight");
        NDArray probe = nd.randomNormal(new Shape(4, 6));
        float[] before = run(net, probe);

        LoraConfig cfg = config(new LoraGAConfig(), "up_proj").build();
        LoraGA.preprocess(net, cfg, 2, loss(net), 1);
        PeftModel peft = PeftModel.getPeftModel(net, cfg);
        assertThat(run(peft, probe)).containsExactly(before, within(2e-5f));

        float[] a = param(net, "block.up_proj.lora_A.default.weight"); // (2, 6)
        float[] b = param(net, "block.up_proj.lora_B.default.weight"); // (5, 2)
        float[] res = param(net, "block.up_proj.base_layer.weight");
        double s = 4.0 / 2;
        double c = Math.pow(5, 0.25) / Math.sqrt(16); // paper's stable scale, out = 5, gamma = 16
        DMatrixRMaj[] usv = svd(g, 5, 6);
        for (int j = 0; j < 2; j++) {
            double dotA = 0;
            for (int i = 0; i < 6; i++) {
                dotA += a[j * 6 + i] * usv[1].get(j, i); // A row j = c·v_j
            }
            assertThat(Math.abs(dotA)).as("A row %d . v_%d", j, j).isCloseTo(c, within(1e-5));
            double dotB = 0;
            for (int o = 0; o < 5; o++) {
                dotB += b[o * 2 + j] * usv[0].get(o, 2 + j); // B column j = c·u_(r+j)
            }
            assertThat(Math.abs(dotB)).as("B column %d . u_%d", j, 2 + j).isCloseTo(c, within(1e-5));
        }
        for (int o = 0; o < 5; o++) {
            for (int i = 0; i < 6; i++) {
                double ba = b[o * 2] * a[i] + b[o * 2 + 1] * a[6 + i];
                assertThat(res[o * 6 + i]).isCloseTo((float) (w[o * 6 + i] - s * ba), within(1e-6f));
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"ArBr, stable", "A2rBr, gd_scale", "ArB2r, weight_svd", "random, unit", "random, stable",
            "ArB2r, gd_scale"})
    void everyDirectionAndScaleKeepsTheOutput(String direction, String scale) {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        NDArray probe = nd.randomNormal(new Shape(4, 6));
        float[] before = run(net, probe);
        LoraConfig cfg = config(new LoraGAConfig(direction, scale, 16), "up_proj", "down_proj").build();
        LoraGA.preprocess(net, cfg, 2, loss(net), 2);
        PeftModel peft = PeftModel.getPeftModel(net, cfg);
        assertThat(run(peft, probe)).containsExactly(before, within(5e-5f));
        float[] b = param(net, "block.down_proj.lora_B.default.weight");
        double norm = 0;
        for (float v : b) {
            norm += v * v;
        }
        assertThat(norm).as("B is not the zero of the default init").isGreaterThan(1e-6);
    }

    @Test
    void onlyOneTargetWeightRequiresGradPerPass() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        Module twin = net.deepCopy();
        LoraConfig cfg = config(new LoraGAConfig(), "up_proj", "down_proj", "head").build();
        List<List<Param>> seen = new ArrayList<>();
        IntFunction<NDArray> base = loss(net);
        LoraGA.preprocess(net, cfg, 2, i -> {
            seen.add(net.namedParameters().values().stream().filter(Param::requiresGrad).toList());
            return base.apply(i);
        }, 1);
        // 3 targets, one per pass, 2 batches per pass: 6 calls, each with exactly one weight requiring grad.
        assertThat(seen).hasSize(6);
        Map<Param, Boolean> distinct = new IdentityHashMap<>();
        for (List<Param> s : seen) {
            assertThat(s).hasSize(1);
            distinct.put(s.get(0), true);
        }
        assertThat(distinct.keySet()).containsExactlyInAnyOrder(net.getParameter("block.up_proj.weight"),
                net.getParameter("block.down_proj.weight"), net.getParameter("head.weight"));
        // Flags are restored (a fresh Net trains everything).
        assertThat(net.namedParameters().values()).allMatch(Param::requiresGrad);

        // Two layers per pass: 2 passes; the estimates (and so the init) do not depend on the grouping.
        List<Integer> counts = new ArrayList<>();
        IntFunction<NDArray> twinLoss = loss(twin);
        LoraGA.preprocess(twin, cfg, 2, i -> {
            counts.add((int) twin.namedParameters().values().stream().filter(Param::requiresGrad).count());
            return twinLoss.apply(i);
        }, 2);
        assertThat(counts).containsExactly(2, 2, 1, 1);
        Torch.manualSeed(3);
        PeftModel.getPeftModel(net, cfg);
        Torch.manualSeed(3);
        PeftModel.getPeftModel(twin, cfg);
        for (String p : List.of("block.up_proj.lora_A.default.weight", "block.down_proj.lora_B.default.weight",
                "head.lora_A.default.weight", "head.base_layer.weight")) {
            assertThat(param(twin, p)).as(p).containsExactly(param(net, p), within(1e-6f));
        }
    }

    @Test
    void getPeftModelWithoutPreprocessingSaysWhatToCall() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        LoraConfig cfg = config(new LoraGAConfig(), "up_proj").build();
        assertThatThrownBy(() -> PeftModel.getPeftModel(net, cfg))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("LoraGA.preprocess(model, config, batches)")
                .hasMessageContaining("before PeftModel.getPeftModel");
        assertThat(net.child("block").child("up_proj")).isInstanceOf(io.peft4j.nn.layers.Linear.class);

        LoraGA.preprocess(net, cfg, 2, loss(net), 1);
        assertThatThrownBy(() -> PeftModel.getPeftModel(net, config(new LoraGAConfig(), "up_proj", "down_proj").build()))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("no gradient estimate for [block.down_proj]");

        LoraConfig noGaConfig = LoraConfig.builder().targetModules("up_proj").initLoraWeights("lora_ga").build();
        assertThatThrownBy(() -> LoraGA.preprocess(net, noGaConfig, 2, loss(net), 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lora_ga_config");
        assertThatThrownBy(() -> PeftModel.getPeftModel(net, noGaConfig))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lora_ga_config must be provided");
    }

    @Test
    void savedAdapterLoadsWithoutPreprocessingAndConvertsToPlainLora() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        Module original = net.deepCopy();
        Module another = net.deepCopy();
        NDArray probe = nd.randomNormal(new Shape(4, 6));
        LoraConfig cfg = config(new LoraGAConfig(), "up_proj", "down_proj").build();
        LoraGA.preprocess(net, cfg, 2, loss(net), 1);
        PeftModel peft = PeftModel.getPeftModel(net, cfg);
        peft.saveAdapter(tmp.resolve("init"));
        float[] initialA = param(net, "block.up_proj.lora_A.default.weight");
        for (Param p : peft.trainableParameters()) {
            try (NDArray noise = nd.randomNormal(0f, 0.2f, p.shape(), ai.djl.ndarray.types.DataType.FLOAT32)) {
                p.setData(p.data().add(noise));
            }
        }
        float[] trained = run(peft, probe);
        peft.saveAdapter(tmp.resolve("converted"),
                SaveOptions.builder().pathInitialModelForWeightConversion(tmp.resolve("init")).build());

        PeftModel loaded = PeftModel.fromPretrained(original, tmp.resolve("converted"));
        assertThat(run(loaded, probe)).containsExactly(trained, within(2e-5f));
        // A LoRA-GA adapter itself also loads without estimates (its weights come from the file, as in peft).
        PeftModel again = PeftModel.fromPretrained(another, tmp.resolve("init"));
        assertThat(param(again, "base_model.model.block.up_proj.lora_A.default.weight")).isEqualTo(initialA);
    }
}
