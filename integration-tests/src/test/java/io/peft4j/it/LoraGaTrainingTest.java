package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.LoraGAConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.F;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.lora.LoraGA;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/**
 * LoRA-GA on the reference LLaMA: the output is unchanged at init, and one SGD step of the adapter moves the
 * weights much closer to the direction of one full fine-tuning step than the default init (kaiming A, zero B) does.
 */
class LoraGaTrainingTest {
    static final List<String> TARGETS = List.of("q_proj", "v_proj", "up_proj", "down_proj");
    static final int R = 4;
    static final int ALPHA = 8;
    static final float LR = 1e-3f;

    NDManager nd;
    NDArray ids;
    /** Rows ({@code out}) of each target weight. */
    final Map<String, Integer> rows = new LinkedHashMap<>();

    @BeforeEach
    void setUp() {
        Torch.manualSeed(11);
        nd = Torch.newManager();
        ids = nd.randomInteger(4, 256, new Shape(2, 16), DataType.INT64);
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private ModelInput batch() {
        return ModelInput.builder().inputIds(ids).labels(ids).build();
    }

    /** Target weight paths ({@code model.layers.0.self_attn.q_proj.weight}, ...) of the plain model. */
    private static List<String> targetWeights(PreTrainedModel model) {
        List<String> out = new ArrayList<>();
        for (String k : model.namedParameters().keySet()) {
            if (TARGETS.stream().anyMatch(t -> k.endsWith("." + t + ".weight"))) {
                out.add(k);
            }
        }
        return out;
    }

    /** Full fine-tuning's gradient of each target weight on the batch, by plain autograd. */
    private Map<String, float[]> fullGradients() throws Exception {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            model.requiresGrad(false);
            List<String> weights = targetWeights(model);
            weights.forEach(k -> model.getParameter(k).requiresGrad(true));
            try (NDScope s = new NDScope(); GradientCollector gc = Torch.engine().newGradientCollector()) {
                s.suppressNotUsedWarning();
                gc.backward(model.forward(batch()).loss());
            }
            for (String k : weights) {
                try (NDArray g = model.getParameter(k).data().getGradient()) {
                    out.put(k, g.toFloatArray());
                    rows.put(k, (int) g.getShape().get(0));
                }
            }
        }
        return out;
    }

    /** {@code ΔW = s·(B1·A1 − B0·A0)} of every target after one SGD step of the adapter (init given by cfg). */
    private Map<String, float[]> loraStep(LoraConfig cfg, boolean preprocess, float[] baseLogits) throws Exception {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            List<String> weights = targetWeights(model);
            if (preprocess) {
                LoraGA.preprocess(model, cfg, List.of(batch()));
            }
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            peft.eval();
            float[] initLogits = logits(peft);
            Reference.assertClose(initLogits, baseLogits, cfg.initLoraWeights() + " logits at init vs base");
            Map<String, float[][]> before = factors(peft, weights);
            peft.train(true);
            try (NDScope s = new NDScope(); GradientCollector gc = Torch.engine().newGradientCollector()) {
                s.suppressNotUsedWarning();
                gc.backward(peft.forward(batch()).loss());
            }
            try (NoGrad ng = NoGrad.enter()) {
                for (Param p : peft.trainableParameters()) {
                    try (NDArray g = p.data().getGradient(); NDArray step = F.mul(g, LR)) {
                        p.setData(p.data().sub(step));
                    }
                }
            }
            Map<String, float[][]> after = factors(peft, weights);
            double s = (double) ALPHA / R;
            for (String k : weights) {
                float[][] b0 = before.get(k);
                float[][] b1 = after.get(k);
                int out0 = b0[1].length / R;
                int in = b0[0].length / R;
                float[] d = new float[out0 * in];
                for (int o = 0; o < out0; o++) {
                    for (int i = 0; i < in; i++) {
                        double v = 0;
                        for (int j = 0; j < R; j++) {
                            v += b1[1][o * R + j] * b1[0][j * in + i] - b0[1][o * R + j] * b0[0][j * in + i];
                        }
                        d[o * in + i] = (float) (s * v);
                    }
                }
                out.put(k, d);
            }
        }
        return out;
    }

    /** {A, B} of each target. */
    private static Map<String, float[][]> factors(PeftModel peft, List<String> weights) {
        Map<String, float[][]> out = new LinkedHashMap<>();
        for (String k : weights) {
            String layer = "base_model.model." + k.substring(0, k.length() - ".weight".length());
            out.put(k, new float[][] {
                    peft.getParameter(layer + ".lora_A.default.weight").data().toFloatArray(),
                    peft.getParameter(layer + ".lora_B.default.weight").data().toFloatArray()});
        }
        return out;
    }

    private float[] logits(PeftModel peft) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return peft.forward(ModelInput.of(ids)).logits().toFloatArray();
        }
    }

    private float[] baseLogits() throws Exception {
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"));
             NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return model.forward(ModelInput.of(ids)).logits().toFloatArray();
        }
    }

    private static LoraConfig config(Object init) {
        LoraConfig.Builder b = LoraConfig.builder().r(R).loraAlpha(ALPHA).targetModules(TARGETS)
                .taskType(TaskType.CAUSAL_LM);
        if (init instanceof LoraGAConfig ga) {
            return b.initLoraWeights("lora_ga").loraGaConfig(ga).build();
        }
        return b.initLoraWeights(true).build();
    }

    /** {cosine, ‖x − y‖ / ‖y‖} of one target ({@code key}) or, for null, of all targets together. */
    private static double[] compare(Map<String, float[]> lora, Map<String, float[]> full, String key) {
        double dot = 0;
        double nl = 0;
        double nf = 0;
        double diff = 0;
        for (String k : key == null ? full.keySet() : List.of(key)) {
            float[] x = lora.get(k);
            float[] y = full.get(k);
            for (int i = 0; i < y.length; i++) {
                dot += (double) x[i] * y[i];
                nl += (double) x[i] * x[i];
                nf += (double) y[i] * y[i];
                diff += ((double) x[i] - y[i]) * ((double) x[i] - y[i]);
            }
        }
        return new double[] {dot / Math.sqrt(nl * nf), Math.sqrt(diff / nf)};
    }

    /**
     * {@code ‖G₂ᵣ‖ / ‖G‖} of one target (or, for null, all together): the cosine with {@code −lr·G} of a step along
     * the gradient's best rank-2r approximation.
     */
    private double rank2rShare(Map<String, float[]> grads, String key) {
        double kept = 0;
        double all = 0;
        for (String k : key == null ? grads.keySet() : List.of(key)) {
            float[] g = grads.get(k);
            int out = rows.get(k);
            int in = g.length / out;
            DMatrixRMaj m = new DMatrixRMaj(out, in);
            for (int i = 0; i < g.length; i++) {
                m.data[i] = g[i];
            }
            SingularValueDecomposition_F64<DMatrixRMaj> svd = DecompositionFactory_DDRM.svd(out, in, false, false, true);
            assertThat(svd.decompose(m)).isTrue();
            double[] sv = svd.getSingularValues().clone();
            Arrays.sort(sv);
            for (int i = 0; i < sv.length; i++) {
                all += sv[i] * sv[i];
                kept += i >= sv.length - 2 * R ? sv[i] * sv[i] : 0;
            }
        }
        return Math.sqrt(kept / all);
    }

    @Test
    void firstStepApproximatesFullFineTuningMuchBetterThanDefaultInit() throws Exception {
        float[] base = baseLogits();
        Map<String, float[]> grads = fullGradients();
        Map<String, float[]> full = new LinkedHashMap<>();
        grads.forEach((k, g) -> {
            float[] d = new float[g.length];
            for (int i = 0; i < g.length; i++) {
                d[i] = -LR * g[i];
            }
            full.put(k, d);
        });
        Map<String, float[]> stable = loraStep(config(new LoraGAConfig()), true, base);
        Map<String, float[]> gd = loraStep(config(new LoraGAConfig("ArB2r", "gd_scale", 16)), true, base);
        Map<String, float[]> dflt = loraStep(config(null), false, base);

        double sumStable = 0;
        double sumDefault = 0;
        for (String k : full.keySet()) {
            double share = rank2rShare(grads, k);
            double cs = compare(stable, full, k)[0];
            double cd = compare(dflt, full, k)[0];
            System.out.printf(Locale.ROOT, "  %-40s cos LoRA-GA(stable)=%.4f default=%.4f rank-2r bound=%.4f%n",
                    k, cs, cd, share);
            // ArB2r's first step is -lr·s²·c²·G₂ᵣ: its cosine with -lr·G is ‖G₂ᵣ‖/‖G‖ (second-order terms ~lr²).
            assertThat(cs).as(k).isCloseTo(share, within(0.01));
            sumStable += cs;
            sumDefault += cd;
        }
        int n = full.size();
        double[] g = compare(gd, full, null);
        double[] d = compare(dflt, full, null);
        double share = rank2rShare(grads, null);
        System.out.printf(Locale.ROOT, "LoRA-GA first step vs full fine-tuning (r=%d, SGD lr=%g, %d targets): "
                        + "mean cos stable=%.4f default=%.4f; all targets: cos gd_scale=%.4f default=%.4f "
                        + "(rank-2r bound %.4f), rel. error gd_scale=%.4f default=%.4f%n",
                R, LR, n, sumStable / n, sumDefault / n, g[0], d[0], share, g[1], d[1]);
        assertThat(sumStable / n).isGreaterThan(sumDefault / n + 0.3);
        // gd_scale makes the step -lr·G₂ᵣ itself: its error is what the rank-2r part leaves out.
        assertThat(g[0]).isCloseTo(share, within(0.01));
        assertThat(g[1]).isCloseTo(Math.sqrt(1 - share * share), within(0.01));
        assertThat(g[1]).isLessThan(d[1] - 0.2);
    }

    @Test
    void preprocessingRequestsOneWeightGradientAtATime() throws Exception {
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            LoraConfig cfg = config(new LoraGAConfig());
            List<Long> requiring = new ArrayList<>();
            LoraGA.preprocess(model, cfg, 3, i -> {
                requiring.add(model.namedParameters().values().stream().filter(Param::requiresGrad).count());
                return model.forward(batch()).loss();
            }, 1);
            // 2 layers x 4 targets = 8 passes over 3 batches, each with a single weight requiring grad.
            assertThat(requiring).hasSize(8 * 3).containsOnly(1L);
            assertThat(LoraGA.isPreprocessed(model, cfg)).isTrue();
        }
    }
}
