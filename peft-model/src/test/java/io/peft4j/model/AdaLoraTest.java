package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfigException;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.transformers.llama.LlamaForCausalLM;
import io.peft4j.tuners.adalora.AdaLoraModel;
import io.peft4j.tuners.adalora.SVDLinear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** AdaLoRA's SVD layer, orthogonal regulariser and refusals, each against a computation written in the test. */
class AdaLoraTest {
    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(11);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    static float[] run(Module m, NDArray x) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(x).toFloatArray();
        }
    }

    static AdaLoraConfig.Builder config(String... targets) {
        return AdaLoraConfig.builder().initR(3).loraAlpha(8).targetModules(targets);
    }

    /** {@code base + x (A⊙E)ᵀ Bᵀ · alpha / (r + 1e-5)} in double, from plain arrays. */
    private static float[] expected(float[] base, float[] x, float[] a, float[] e, float[] b, int n, int in, int out,
                                    int r, double alpha) {
        float[] y = base.clone();
        double scale = alpha / (r + 1e-5);
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) {
                double s = 0;
                for (int k = 0; k < r; k++) {
                    double h = 0;
                    for (int j = 0; j < in; j++) {
                        h += x[i * in + j] * a[k * in + j] * e[k];
                    }
                    s += h * b[o * r + k];
                }
                y[i * out + o] += (float) (s * scale);
            }
        }
        return y;
    }

    private void randomize(SVDLinear layer) {
        layer.loraA("default").setData(nd.randomNormal(0f, 0.5f, layer.loraA("default").shape(), DataType.FLOAT32));
        layer.loraE("default").setData(nd.randomNormal(0f, 1f, layer.loraE("default").shape(), DataType.FLOAT32));
        layer.loraB("default").setData(nd.randomNormal(0f, 0.5f, layer.loraB("default").shape(), DataType.FLOAT32));
    }

    @Test
    void svdLinearStartsAsBaseComputesTheFormulaAndMergesExactly() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        NDArray x = nd.randomNormal(new Shape(4, 6));
        float[] before = run(net, x);
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj").build());
        assertThat(run(peft, x)).isEqualTo(before); // E = 0

        SVDLinear layer = (SVDLinear) net.getSubmodule("block.up_proj");
        assertThat(layer.loraA("default").shape()).isEqualTo(new Shape(3, 6));
        assertThat(layer.loraE("default").shape()).isEqualTo(new Shape(3, 1));
        assertThat(layer.loraB("default").shape()).isEqualTo(new Shape(5, 3));
        assertThat(layer.loraE("default").data().toFloatArray()).isEqualTo(new float[3]);
        float[] a0 = layer.loraA("default").data().toFloatArray();
        double maxAbs = 0;
        double sumSq = 0;
        for (float v : a0) {
            maxAbs = Math.max(maxAbs, Math.abs(v));
            sumSq += v * v;
        }
        assertThat(maxAbs).isLessThan(0.12); // N(0, 0.02²): 6 sigma
        assertThat(Math.sqrt(sumSq / a0.length)).isBetween(0.005, 0.05);
        assertThat(layer.ranknum("default")).isEqualTo(3f);
        assertThat(layer.scaling("default")).isEqualTo(8.0);

        Map<String, Param> params = peft.namedParameters();
        assertThat(params.get("base_model.model.block.up_proj.lora_E.default").requiresGrad()).isTrue();
        assertThat(params.get("base_model.model.block.up_proj.ranknum.default").requiresGrad()).isFalse();
        // base 70; adapter 3*6 + 3 + 5*3 = 36 trainable; ranknum counts in the total only, as in peft
        assertThat(peft.getNbTrainableParameters()).containsExactly(36, 107);
        assertThat(peft.tuner().adapterStateDict("default", "base_model.").keySet()).containsExactlyInAnyOrder(
                "base_model.model.block.up_proj.lora_A", "base_model.model.block.up_proj.lora_E",
                "base_model.model.block.up_proj.lora_B");

        randomize(layer);
        Module base = layer.baseLayer();
        float[] adapted = run(layer, x);
        float[] want = expected(run(base, x), x.toFloatArray(), layer.loraA("default").data().toFloatArray(),
                layer.loraE("default").data().toFloatArray(), layer.loraB("default").data().toFloatArray(),
                4, 6, 5, 3, 8.0);
        assertThat(adapted).containsExactly(want, within(1e-5f));

        float[] w = base.param("weight").data().toFloatArray();
        peft.mergeAdapter();
        assertThat(run(layer, x)).containsExactly(adapted, within(1e-5f));
        peft.unmergeAdapter();
        assertThat(base.param("weight").data().toFloatArray()).containsExactly(w, within(1e-6f));
        float[] full = run(peft, x);
        Module merged = peft.mergeAndUnload();
        assertThat(merged.getSubmodule("block.up_proj")).isSameAs(base);
        assertThat(run(merged, x)).containsExactly(full, within(1e-5f));
    }

    /** A GPT-2 style block: one Conv1D with its weight stored (in, out). */
    static final class ConvNet extends Module {
        ConvNet(NDManager m) {
            registerModule("c_attn", new Conv1D(m, 6, 5));
        }

        @Override
        public NDArray forward(NDArray x) {
            return call("c_attn", x);
        }
    }

    @Test
    void conv1dTargetForcesFanInFanOutAndMatchesTheFormula() {
        ConvNet net = new ConvNet(nd);
        PeftModel peft = PeftModel.getPeftModel(net, config("c_attn").build());
        assertThat(((AdaLoraConfig) peft.peftConfig().get("default")).fanInFanOut()).isTrue();
        SVDLinear layer = (SVDLinear) net.getSubmodule("c_attn");
        assertThat(layer.loraA("default").shape()).isEqualTo(new Shape(3, 6));
        assertThat(layer.loraB("default").shape()).isEqualTo(new Shape(5, 3));
        randomize(layer);
        NDArray x = nd.randomNormal(new Shape(2, 6));
        float[] adapted = run(peft, x);
        float[] want = expected(run(layer.baseLayer(), x), x.toFloatArray(), layer.loraA("default").data().toFloatArray(),
                layer.loraE("default").data().toFloatArray(), layer.loraB("default").data().toFloatArray(),
                2, 6, 5, 3, 8.0);
        assertThat(adapted).containsExactly(want, within(1e-5f));
        peft.mergeAdapter();
        assertThat(run(peft, x)).containsExactly(adapted, within(1e-5f));
    }

    @Test
    void initLoraWeightsFalseDrawsStandardNormalsAndAlphaZeroScalesByRank() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj").initLoraWeights(false).loraAlpha(0).build());
        SVDLinear layer = (SVDLinear) net.getSubmodule("block.up_proj");
        double sumSq = 0;
        for (float v : layer.loraE("default").data().toFloatArray()) {
            sumSq += v * v;
        }
        assertThat(sumSq).isGreaterThan(0.0); // N(0, 1), not zeros
        assertThat(layer.scaling("default")).isEqualTo(3.0);
        assertThat(peft.getNbTrainableParameters()[0]).isEqualTo(36);
    }

    static LlamaForCausalLM tinyLlama() {
        LlamaForCausalLM model = PeftGenerationTest.tinyLlama();
        model.requiresGrad(false);
        return model;
    }

    static ModelInput batch(NDManager m) {
        NDArray ids = m.create(new long[] {5, 17, 42, 3, 8, 60, 11, 9, 2, 33, 1, 7}, new Shape(2, 6));
        NDScope.unregister(ids);
        return ModelInput.builder().inputIds(ids).labels(ids).build();
    }

    private static float loss(java.util.function.Supplier<NDArray> f) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return f.get().getFloat();
        }
    }

    /** {@code mean over matrices of ‖P - I‖_F}, {@code P = A Aᵀ} or {@code Bᵀ B}, from plain arrays in double. */
    private static double orthPenalty(PeftModel peft) {
        double sum = 0;
        int count = 0;
        for (SVDLinear layer : peft.baseModel().namedModules().values().stream()
                .filter(SVDLinear.class::isInstance).map(SVDLinear.class::cast).toList()) {
            for (boolean isA : new boolean[] {true, false}) {
                Param p = isA ? layer.loraA("default") : layer.loraB("default");
                float[] v = p.data().toFloatArray();
                int rows = (int) p.shape().get(0);
                int cols = (int) p.shape().get(1);
                int n = isA ? rows : cols;
                double fro = 0;
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < n; j++) {
                        double dot = 0;
                        for (int k = 0; k < (isA ? cols : rows); k++) {
                            dot += isA ? v[i * cols + k] * v[j * cols + k] : v[k * cols + i] * v[k * cols + j];
                        }
                        double d = dot - (i == j ? 1 : 0);
                        fro += d * d;
                    }
                }
                sum += Math.sqrt(fro);
                count++;
            }
        }
        return sum / count;
    }

    @Test
    void orthogonalRegulariserIsAddedToTheReturnedLossAndTrainsA() {
        LlamaForCausalLM model = tinyLlama();
        ModelInput in = batch(model.manager());
        float base = loss(() -> model.forward(in).loss());
        PeftModel peft = PeftModel.getPeftModel(model, AdaLoraConfig.builder().initR(4).loraAlpha(8)
                .orthRegWeight(0.5).taskType(TaskType.CAUSAL_LM).build());
        // Default AdaLoRA targets for llama: q_proj and v_proj of both layers.
        assertThat(peft.tuner().targetedModuleNames()).containsExactly("model.layers.0.self_attn.q_proj",
                "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj");
        double penalty = orthPenalty(peft);
        assertThat(penalty).isGreaterThan(0.5);
        // E = 0: the model computes what the base does, so the loss differs by exactly the weighted penalty.
        assertThat((double) loss(() -> peft.forward(in).loss())).isCloseTo(base + 0.5 * penalty, within(1e-4));

        // With E = 0 the data loss gives A no gradient: a changed A proves the penalty is part of the graph.
        SVDLinear q = (SVDLinear) model.getSubmodule("model.layers.0.self_attn.q_proj");
        float[] a = q.loraA("default").data().toFloatArray();
        peft.train(true);
        AdamW opt = AdamW.builder().lr(1e-2f).build();
        TrainStep.run(() -> peft.forward(in).loss(), opt, peft.trainableParameters());
        assertThat(q.loraA("default").data().toFloatArray()).isNotEqualTo(a);
        assertThat(orthPenalty(peft)).isLessThan(penalty);
    }

    @Test
    void zeroWeightOrFrozenAdapterAddsNoPenalty() {
        LlamaForCausalLM model = tinyLlama();
        ModelInput in = batch(model.manager());
        float base = loss(() -> model.forward(in).loss());
        PeftModel peft = PeftModel.getPeftModel(model, AdaLoraConfig.builder().initR(4).orthRegWeight(0)
                .taskType(TaskType.CAUSAL_LM).build());
        assertThat(loss(() -> peft.forward(in).loss())).isEqualTo(base);

        LlamaForCausalLM other = tinyLlama();
        AdaLoraConfig frozen = AdaLoraConfig.builder().initR(4).taskType(TaskType.CAUSAL_LM).build();
        PeftModel inference = PeftModel.getPeftModel(other, (AdaLoraConfig) PeftModel.withField(frozen,
                "inference_mode", true));
        ModelInput in2 = batch(other.manager());
        assertThat(loss(() -> inference.forward(in2).loss())).isEqualTo(loss(() -> other.forward(in2).loss()));
    }

    @Test
    void refusesSecondTrainableAdapterDoraWeightedCombinationAndForeignMethods() {
        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("up_proj").build());
        assertThatThrownBy(() -> peft.addAdapter("second", config("up_proj").build()))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("AdaLoraModel supports only 1 trainable adapter");
        // A frozen second adapter is fine.
        peft.addAdapter("frozen", PeftModel.withField(config("down_proj").build(), "inference_mode", true));
        assertThat(peft.peftConfig()).containsKeys("default", "frozen");
        assertThat(((AdaLoraModel) (Object) peft.tuner()).trainableAdapterName()).isEqualTo("default");

        assertThatThrownBy(() -> config("up_proj").useDora(true).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("use_dora")
                .hasMessageContaining("not supported by ADALORA");
        assertThatThrownBy(() -> peft.addWeightedAdapter(List.of("default"), List.of(1.0), "mix", "linear"))
                .isInstanceOf(UnsupportedOperationException.class)
                .hasMessageContaining("does not support add_weighted_adapter");
        // total_step is needed for the schedule.
        assertThatThrownBy(() -> peft.updateAndAllocate(1))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("total_step");

        PeftModel lora = PeftModel.getPeftModel(new PeftModelTest.Net(nd),
                LoraConfig.builder().targetModules("up_proj").build());
        assertThatThrownBy(() -> lora.updateAndAllocate(1))
                .isInstanceOf(UnsupportedOperationException.class).hasMessageContaining("AdaLoRA")
                .hasMessageContaining("LORA");
    }

    /** Embedding holder for the unsupported-target check. */
    static final class EmbedNet extends Module {
        EmbedNet(NDManager m) {
            registerModule("embed_tokens", new Embedding(m, 10, 4));
        }
    }

    @Test
    void unsupportedTargetsAndMixedBatchesFailClearly() {
        assertThatThrownBy(() -> PeftModel.getPeftModel(new EmbedNet(nd), config("embed_tokens").build()))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("only `Linear` and GPT-2 `Conv1D` are supported by AdaLoRA");

        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("up_proj").build());
        peft.eval();
        NDArray x = nd.randomNormal(new Shape(2, 6));
        assertThatThrownBy(() -> peft.forward(x, List.of("default", "__base__")))
                .isInstanceOf(UnsupportedOperationException.class).hasMessageContaining("not supported by AdaLoRA");
    }
}
