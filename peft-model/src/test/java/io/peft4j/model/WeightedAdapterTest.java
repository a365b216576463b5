package io.peft4j.model;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import io.peft4j.config.LoraConfig;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.tuners.lora.LoraLinear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** add_weighted_adapter: cat is exactly the weighted sum of the deltas; linear follows peft's formula. */
class WeightedAdapterTest {
    NDManager nd;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(9);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private PeftModel twoAdapters(int r2) {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).loraAlpha(4).targetModules("up_proj").build());
        peft.addAdapter("other", LoraConfig.builder().r(r2).loraAlpha(8).targetModules("up_proj", "down_proj").build());
        for (var e : peft.namedParameters().entrySet()) {
            if (e.getKey().contains("lora_B")) {
                e.getValue().setData(nd.randomNormal(0f, 0.3f, e.getValue().shape(), DataType.FLOAT32));
            }
        }
        return peft;
    }

    private static float[] delta(LoraLinear l, String adapter) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return l.deltaWeight(adapter).toFloatArray();
        }
    }

    @Test
    void catIsTheWeightedSumOfDeltasAndLinearFollowsPeft() {
        PeftModel peft = twoAdapters(3);
        LoraLinear up = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        LoraLinear down = (LoraLinear) peft.baseModel().getSubmodule("block.down_proj");
        float[] d1 = delta(up, "default");
        float[] d2 = delta(up, "other");
        peft.addWeightedAdapter(List.of("default", "other"), List.of(0.7, -0.4), "mix", "cat");
        assertThat(up.rank("mix")).isEqualTo(5);
        assertThat(up.scaling("mix")).isEqualTo(1.0);
        float[] mix = delta(up, "mix");
        for (int i = 0; i < mix.length; i++) {
            assertThat(mix[i]).isCloseTo(0.7f * d1[i] - 0.4f * d2[i], within(1e-5f));
        }
        // down_proj has only "other": its delta is -0.4 of it, padded with zero rank slots.
        float[] dd = delta(down, "other");
        float[] dmix = delta(down, "mix");
        for (int i = 0; i < dd.length; i++) {
            assertThat(dmix[i]).isCloseTo(-0.4f * dd[i], within(1e-5f));
        }
        // the new adapter is inactive and frozen; activating it runs it
        assertThat(peft.namedParameters().get("base_model.model.block.up_proj.lora_A.mix.weight").requiresGrad()).isFalse();
        peft.setAdapter("mix");
        assertThat(peft.activeAdapter()).isEqualTo("mix");

        PeftModel same = twoAdapters(2);
        LoraLinear up2 = (LoraLinear) same.baseModel().getSubmodule("block.up_proj");
        same.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 0.5), "lin", "linear");
        // peft: A = Σ sqrt(w_i s_i) A_i, B = Σ sqrt(w_i s_i) B_i with s = alpha / r (2 and 4)
        float f1 = (float) Math.sqrt(1.0 * 2.0);
        float f2 = (float) Math.sqrt(0.5 * 4.0);
        float[] a = up2.loraA("lin").data().toFloatArray();
        float[] a1 = up2.loraA("default").data().toFloatArray();
        float[] a2 = up2.loraA("other").data().toFloatArray();
        for (int i = 0; i < a.length; i++) {
            assertThat(a[i]).isCloseTo(f1 * a1[i] + f2 * a2[i], within(1e-5f));
        }
    }

    /** {@code Σ (w_i·s_i)·ΔW_i} as peft 0.13.2's svd combination weighs it (ΔW_i already includes s_i). */
    private static double[] svdTarget(LoraLinear l, double w1, double w2) {
        float[] d1 = delta(l, "default");
        float[] d2 = delta(l, "other");
        double[] m = new double[d1.length];
        for (int i = 0; i < m.length; i++) {
            m[i] = w1 * l.scaling("default") * d1[i] + w2 * l.scaling("other") * d2[i];
        }
        return m;
    }

    private static double[] singularValues(double[] m, int rows, int cols) {
        var svd = org.ejml.dense.row.factory.DecompositionFactory_DDRM.svd(rows, cols, false, false, true);
        assertThat(svd.decompose(new org.ejml.data.DMatrixRMaj(rows, cols, true, m))).isTrue();
        double[] s = svd.getSingularValues().clone();
        java.util.Arrays.sort(s);
        return s;
    }

    @Test
    void svdWithFullRankReproducesTheWeightedSumAndTruncatesOptimally() {
        PeftModel peft = twoAdapters(3);
        LoraLinear up = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        double[] target = svdTarget(up, 0.7, -0.4);
        peft.addWeightedAdapter(List.of("default", "other"), List.of(0.7, -0.4), "full", "svd", 5, null);
        assertThat(up.rank("full")).isEqualTo(5);
        assertThat(up.scaling("full")).isEqualTo(1.0);
        float[] full = delta(up, "full");
        for (int i = 0; i < full.length; i++) {
            assertThat((double) full[i]).isCloseTo(target[i], within(1e-5));
        }

        // default rank = max source rank (3): Eckart-Young, the error is exactly the two dropped singular values
        peft.addWeightedAdapter(List.of("default", "other"), List.of(0.7, -0.4), "k3");
        assertThat(up.rank("k3")).isEqualTo(3);
        float[] k3 = delta(up, "k3");
        double[] sv = singularValues(target, 5, 6); // ascending
        double err2 = 0;
        for (int i = 0; i < k3.length; i++) {
            err2 += (k3[i] - target[i]) * (k3[i] - target[i]);
        }
        assertThat(err2).isCloseTo(sv[0] * sv[0] + sv[1] * sv[1], within(1e-8));
        assertThat(sv[1]).isGreaterThan(1e-3); // the case is discriminative: truncation really drops something
        // A = Vh_k has orthonormal rows, B = U_k·S_k
        float[] a = up.loraA("k3").data().toFloatArray();
        for (int p = 0; p < 3; p++) {
            for (int q = 0; q < 3; q++) {
                double dot = 0;
                for (int i = 0; i < 6; i++) {
                    dot += a[p * 6 + i] * a[q * 6 + i];
                }
                assertThat(dot).isCloseTo(p == q ? 1.0 : 0.0, within(1e-5));
            }
        }
        // down_proj only has "other": rank 3 is its full rank, so the combination is exact there
        LoraLinear down = (LoraLinear) peft.baseModel().getSubmodule("block.down_proj");
        float[] dd = delta(down, "other");
        float[] dk3 = delta(down, "k3");
        for (int i = 0; i < dd.length; i++) {
            assertThat((double) dk3[i]).isCloseTo(-0.4 * down.scaling("other") * dd[i], within(1e-5));
        }
    }

    @Test
    void svdClampCutsAtTheQuantileOfTheFactors() {
        PeftModel peft = twoAdapters(3);
        LoraLinear up = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        peft.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "plain", "svd", 4, null);
        peft.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "clamped", "svd", 4, 0.8);
        float[] a = up.loraA("plain").data().toFloatArray();
        float[] b = up.loraB("plain").data().toFloatArray();
        double[] all = new double[a.length + b.length];
        for (int i = 0; i < b.length; i++) {
            all[i] = b[i];
        }
        for (int i = 0; i < a.length; i++) {
            all[b.length + i] = a[i];
        }
        java.util.Arrays.sort(all);
        double pos = 0.8 * (all.length - 1);
        int lo = (int) pos;
        double hi = all[lo] + (pos - lo) * (all[lo + 1] - all[lo]);
        float[] ca = up.loraA("clamped").data().toFloatArray();
        float[] cb = up.loraB("clamped").data().toFloatArray();
        int clipped = 0;
        for (int i = 0; i < a.length; i++) {
            assertThat((double) ca[i]).isCloseTo(Math.max(-hi, Math.min(hi, a[i])), within(1e-6));
            clipped += Math.abs(a[i]) > hi ? 1 : 0;
        }
        for (int i = 0; i < b.length; i++) {
            assertThat((double) cb[i]).isCloseTo(Math.max(-hi, Math.min(hi, b[i])), within(1e-6));
            clipped += Math.abs(b[i]) > hi ? 1 : 0;
        }
        assertThat(clipped).isGreaterThan(0);
    }

    @Test
    void aSingleAdapterIsCombinedLinearlyEvenWithANegativeWeight() {
        PeftModel peft = twoAdapters(3);
        LoraLinear up = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        float[] d = delta(up, "other");
        peft.addWeightedAdapter(List.of("other"), List.of(-0.5), "neg", "svd", 1, null);
        assertThat(up.rank("neg")).isEqualTo(3); // peft: one adapter → linear, svd_rank ignored
        float[] neg = delta(up, "neg");
        for (int i = 0; i < d.length; i++) {
            assertThat(neg[i]).isCloseTo(-0.5f * d[i], within(1e-5f));
        }
    }

    @Test
    void combinationsPeftGetsWrongAreRefused() {
        PeftModel ranks = twoAdapters(3);
        assertThatThrownBy(() -> ranks.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "x", "linear"))
                .hasMessageContaining("same r");
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        PeftModel rs = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).useRslora(true).targetModules("up_proj").build());
        assertThatThrownBy(() -> rs.addWeightedAdapter(List.of("default"), List.of(1.0), "x", "cat"))
                .hasMessageContaining("rsLoRA");
        assertThatThrownBy(() -> rs.addWeightedAdapter(List.of("nope"), List.of(1.0), "x", "cat"))
                .hasMessageContaining("nope");
        assertThatThrownBy(() -> ranks.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "x", "ties"))
                .hasMessageContaining("ties").hasMessageContaining("svd, linear, cat");
        assertThatThrownBy(() -> ranks.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "x", "svd", 0, null))
                .hasMessageContaining("svd_rank");
        assertThatThrownBy(() -> ranks.addWeightedAdapter(List.of("default", "other"), List.of(1.0, 1.0), "x", "svd", null, 1.5))
                .hasMessageContaining("svd_clamp");
    }

    @Test
    void mixedBatchRowsMatchEachAdapterAlone() {
        PeftModel peft = twoAdapters(3);
        peft.eval();
        ai.djl.ndarray.NDArray x = nd.randomNormal(new ai.djl.ndarray.types.Shape(3, 6));
        float[] mixed;
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            mixed = peft.forward(x, List.of("default", "__base__", "other")).toFloatArray();
        }
        float[] withDefault = run(peft, x);
        float[] base;
        try (PeftModel.AdapterScope off = peft.disableAdapter()) {
            base = run(peft, x);
        }
        peft.setAdapter("other");
        float[] withOther = run(peft, x);
        for (int j = 0; j < 3; j++) {
            assertThat(mixed[j]).isCloseTo(withDefault[j], within(1e-6f));
            assertThat(mixed[3 + j]).isCloseTo(base[3 + j], within(1e-6f));
            assertThat(mixed[6 + j]).isCloseTo(withOther[6 + j], within(1e-6f));
        }
        assertThat(withOther[6]).isNotCloseTo(base[6], within(1e-4f));
        assertThatThrownBy(() -> peft.forward(x, List.of("default", "nope", "other"))).hasMessageContaining("nope");
        assertThatThrownBy(() -> peft.forward(x, List.of("default"))).hasMessageContaining("same as the number of inputs");
        peft.mergeAdapter();
        assertThatThrownBy(() -> peft.forward(x, List.of("default", "other", "other"))).hasMessageContaining("merged");
    }

    private static float[] run(PeftModel m, ai.djl.ndarray.NDArray x) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(x).toFloatArray();
        }
    }
}
