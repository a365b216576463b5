package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.tuners.adalora.AdaLoraModel;
import io.peft4j.tuners.adalora.RankAllocator;
import io.peft4j.tuners.adalora.SVDLinear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/**
 * AdaLoRA's rank allocation over a short training run on the small Net, checked step by step against an
 * independent re-computation in this test (EMA of |p·∇p| in double, triplet scores, k-th smallest threshold,
 * the cubic schedule), then the pruned save and its reload.
 */
class AdaLoraAllocatorTest {
    static final int INIT_R = 4;
    static final int TARGET_R = 2;
    static final int TINIT = 2;
    static final int TFINAL = 3;
    static final int TOTAL = 12;
    static final int DELTA_T = 2;
    static final double BETA = 0.85;
    static final List<String> LAYERS = List.of("block.up_proj", "block.down_proj");

    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(21);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    /** The schedule as the AdaLoRA paper and peft define it, written out here. */
    static int[] expectedBudget(int step) {
        int init = INIT_R * LAYERS.size();
        int target = TARGET_R * LAYERS.size();
        if (step <= TINIT) {
            return new int[] {init, 0};
        }
        if (step > TOTAL - TFINAL) {
            return new int[] {target, 1};
        }
        double progress = (double) (step - TINIT) / (TOTAL - TFINAL - TINIT);
        double remaining = Math.pow(1 - progress, 3);
        return new int[] {(int) Math.floor(target + (init - target) * remaining), step % DELTA_T == 0 ? 1 : 0};
    }

    /** Smoothed sensitivity and uncertainty kept by the test itself, per parameter name. */
    private final Map<String, double[]> avg = new HashMap<>();
    private final Map<String, double[]> unc = new HashMap<>();

    private void testUpdate(Map<String, Param> params) {
        for (Map.Entry<String, Param> e : params.entrySet()) {
            float[] p = e.getValue().data().toFloatArray();
            float[] g;
            try (NDArray grad = e.getValue().data().getGradient()) {
                g = grad.toFloatArray();
            }
            double[] a = avg.computeIfAbsent(e.getKey(), k -> new double[p.length]);
            double[] u = unc.computeIfAbsent(e.getKey(), k -> new double[p.length]);
            for (int i = 0; i < p.length; i++) {
                double ipt = Math.abs((double) p[i] * g[i]);
                a[i] = BETA * a[i] + (1 - BETA) * ipt;
                u[i] = BETA * u[i] + (1 - BETA) * Math.abs(ipt - a[i]);
            }
        }
    }

    /** Which ranks survive a budget: S_i = s(E_i) + mean_j s(A_ij) + mean_k s(B_ki), drop the k lowest (ties too). */
    private Map<String, boolean[]> expectedKeep(int budget, Map<String, SVDLinear> layers) {
        Map<String, double[]> scores = new LinkedHashMap<>();
        List<Double> all = new ArrayList<>();
        for (String path : LAYERS) {
            int in = (int) layers.get(path).loraA("default").shape().get(1);
            int out = (int) layers.get(path).loraB("default").shape().get(0);
            double[] s = new double[INIT_R];
            for (int i = 0; i < INIT_R; i++) {
                double ea = 0;
                for (int j = 0; j < in; j++) {
                    ea += score(path + ".lora_A.default", i * in + j);
                }
                double eb = 0;
                for (int k = 0; k < out; k++) {
                    eb += score(path + ".lora_B.default", k * INIT_R + i);
                }
                s[i] = score(path + ".lora_E.default", i) + ea / in + eb / out;
                all.add(s[i]);
            }
            scores.put(path, s);
        }
        double[] sorted = all.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        double threshold = sorted[INIT_R * LAYERS.size() - budget - 1];
        Map<String, boolean[]> keep = new LinkedHashMap<>();
        scores.forEach((path, s) -> {
            boolean[] k = new boolean[s.length];
            for (int i = 0; i < s.length; i++) {
                k[i] = s[i] > threshold;
            }
            keep.put(path, k);
        });
        return keep;
    }

    private double score(String name, int i) {
        return avg.get(name)[i] * unc.get(name)[i];
    }

    private static boolean[] toArray(List<Boolean> l) {
        boolean[] out = new boolean[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = l.get(i);
        }
        return out;
    }

    @Test
    void ranksShrinkToTheBudgetOnScheduleAndThePrunedAdapterSavesAndReloads(@TempDir Path tmp) throws Exception {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        Module pristine = net.deepCopy();
        AdaLoraConfig cfg = AdaLoraConfig.builder().initR(INIT_R).targetR(TARGET_R).loraAlpha(8)
                .targetModules("up_proj", "down_proj").tinit(TINIT).tfinal(TFINAL).totalStep(TOTAL).deltaT(DELTA_T)
                .beta1(BETA).beta2(BETA).build();
        PeftModel peft = PeftModel.getPeftModel(net, cfg);
        AdaLoraModel tuner = (AdaLoraModel) (Object) peft.tuner();
        RankAllocator allocator = tuner.rankAllocator();
        assertThat(allocator.initBudget()).isEqualTo(8);
        assertThat(allocator.targetBudget()).isEqualTo(4);
        for (int step = 0; step <= TOTAL + 2; step++) {
            int[] want = expectedBudget(step);
            RankAllocator.Budget b = allocator.budgetSchedule(step, cfg);
            assertThat(new int[] {b.budget(), b.mask() ? 1 : 0}).as("schedule at step " + step).isEqualTo(want);
        }

        Map<String, SVDLinear> layers = new LinkedHashMap<>();
        LAYERS.forEach(p -> layers.put(p, (SVDLinear) net.getSubmodule(p)));
        Map<String, Param> adapterParams = new LinkedHashMap<>();
        layers.forEach((path, l) -> l.adapterParameters("default").forEach((k, p) -> adapterParams.put(path + "." + k, p)));
        assertThat(adapterParams).hasSize(6);

        peft.train(true);
        NDArray x = nd.randomNormal(new Shape(8, 6));
        NDArray y = nd.randomNormal(new Shape(8, 3));
        List<Param> params = peft.trainableParameters();
        AdamW opt = AdamW.builder().lr(0.05f).build();
        Map<String, boolean[]> lastMask = null;
        int masked = 0;
        int liveAtStep4 = 0;
        for (int step = 0; step <= TOTAL + 2; step++) {
            final int s = step;
            Map<String, boolean[]>[] expected = new Map[1];
            TrainStep.run(() -> peft.forward(x).sub(y).square().mean(), opt, params, () -> {
                if (s < TOTAL - TFINAL) {
                    testUpdate(adapterParams);
                }
                int[] budget = expectedBudget(s);
                if ((s < TOTAL - TFINAL && budget[1] == 1) || s == TOTAL - TFINAL) {
                    expected[0] = expectedKeep(budget[0], layers);
                }
                peft.updateAndAllocate(s);
            });
            Map<String, List<Boolean>> pattern = ((AdaLoraConfig) peft.peftConfig().get("default")).rankPattern();
            if (expected[0] != null) {
                masked++;
                for (String path : LAYERS) {
                    assertThat(toArray(pattern.get(path + ".lora_E.default"))).as("mask of " + path + " at step " + s)
                            .isEqualTo(expected[0].get(path));
                }
                lastMask = expected[0];
            } else if (s <= TINIT) {
                assertThat(pattern).as("no mask during warm-up").isNull();
            }
            if (expected[0] != null || s > TOTAL - TFINAL) {
                // Masked singular values are zero right after the allocation (re-applied after the final step too).
                for (String path : LAYERS) {
                    float[] e = layers.get(path).loraE("default").data().toFloatArray();
                    boolean[] keep = lastMask.get(path);
                    for (int i = 0; i < e.length; i++) {
                        if (!keep[i]) {
                            assertThat(e[i]).as(path + " E[" + i + "] at step " + s).isZero();
                        }
                    }
                }
            }
            if (step == 4) {
                liveAtStep4 = nd.getManagedArrays().size();
            }
            if (step == TOTAL - TFINAL - 1) {
                // The importance state is updated in place: nothing accumulates from step to step.
                assertThat(nd.getManagedArrays().size()).isEqualTo(liveAtStep4);
            }
        }
        // steps 4, 6, 8 on the deltaT schedule plus the final allocation at step 9
        assertThat(masked).isEqualTo(4);
        int kept = 0;
        for (boolean[] k : lastMask.values()) {
            for (boolean b : k) {
                kept += b ? 1 : 0;
            }
        }
        assertThat(kept).isEqualTo(TARGET_R * LAYERS.size());

        peft.eval();
        NDArray probe = nd.randomNormal(new Shape(3, 6));
        float[] trained = AdaLoraTest.run(peft, probe);
        Path dir = tmp.resolve("adalora");
        peft.saveAdapter(dir);

        JsonNode saved = new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
        assertThat(saved.get("rank_pattern").has("block.up_proj.lora_E")).isTrue();
        assertThat(saved.get("rank_pattern").has("block.up_proj.lora_E.default")).isFalse();
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            assertThat(f.names()).containsExactlyInAnyOrder("base_model.model.block.up_proj.lora_A",
                    "base_model.model.block.up_proj.lora_E", "base_model.model.block.up_proj.lora_B",
                    "base_model.model.block.down_proj.lora_A", "base_model.model.block.down_proj.lora_E",
                    "base_model.model.block.down_proj.lora_B");
            for (String path : LAYERS) {
                boolean[] keep = lastMask.get(path);
                int r = 0;
                for (boolean b : keep) {
                    r += b ? 1 : 0;
                }
                SVDLinear l = layers.get(path);
                int in = (int) l.loraA("default").shape().get(1);
                int out = (int) l.loraB("default").shape().get(0);
                String key = "base_model.model." + path;
                assertThat(f.info(key + ".lora_A").shape()).containsExactly(r, in);
                assertThat(f.info(key + ".lora_E").shape()).containsExactly(r, 1);
                assertThat(f.info(key + ".lora_B").shape()).containsExactly(out, r);
                // The kept rows / columns, in order.
                float[] a = l.loraA("default").data().toFloatArray();
                float[] b = l.loraB("default").data().toFloatArray();
                float[] savedA = f.toFloatArray(key + ".lora_A");
                float[] savedB = f.toFloatArray(key + ".lora_B");
                int j = 0;
                for (int i = 0; i < INIT_R; i++) {
                    if (!keep[i]) {
                        continue;
                    }
                    assertThat(Arrays.copyOfRange(savedA, j * in, (j + 1) * in))
                            .isEqualTo(Arrays.copyOfRange(a, i * in, (i + 1) * in));
                    for (int o = 0; o < out; o++) {
                        assertThat(savedB[o * r + j]).isEqualTo(b[o * INIT_R + i]);
                    }
                    j++;
                }
            }
        }

        PeftModel reloaded = PeftModel.fromPretrained(pristine, dir);
        for (String path : LAYERS) {
            SVDLinear l = (SVDLinear) pristine.getSubmodule(path);
            int r = 0;
            for (boolean b : lastMask.get(path)) {
                r += b ? 1 : 0;
            }
            assertThat(l.rank("default")).isEqualTo(r);
            assertThat(l.loraE("default").shape()).isEqualTo(new Shape(r, 1));
            // The output scale stays alpha / init_r after the cut, as in peft.
            assertThat(l.ranknum("default")).isEqualTo((float) INIT_R);
        }
        assertThat(AdaLoraTest.run(reloaded, probe)).containsExactly(trained, within(1e-5f));
    }
}
