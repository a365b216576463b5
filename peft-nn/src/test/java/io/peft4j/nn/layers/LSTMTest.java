package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Sequential;
import io.peft4j.nn.Torch;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class LSTMTest {
    static NDManager manager;

    @BeforeAll
    static void init() {
        Torch.manualSeed(3);
        manager = Torch.newManager();
    }

    @AfterAll
    static void close() {
        manager.close();
    }

    @Test
    void parameterNamesAndShapesAreTorchs() {
        LSTM lstm = new LSTM(manager, 5, 3, 2, 0.0, true);
        Map<String, Param> p = lstm.namedParameters();
        assertThat(p.keySet()).containsExactly(
                "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
                "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
                "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse");
        assertThat(p.get("weight_ih_l0").shape()).isEqualTo(new Shape(12, 5));
        assertThat(p.get("weight_ih_l1").shape()).isEqualTo(new Shape(12, 6));
        assertThat(p.get("weight_hh_l1_reverse").shape()).isEqualTo(new Shape(12, 3));
        assertThat(p.get("bias_hh_l0").shape()).isEqualTo(new Shape(12));
        float bound = (float) (1 / Math.sqrt(3));
        for (Param q : p.values()) {
            for (float v : q.data().toFloatArray()) {
                assertThat(Math.abs(v)).isLessThanOrEqualTo(bound);
            }
        }
    }

    /** Against a scalar Java LSTM written from PyTorch's equations (gates i, f, g, o). */
    @Test
    void bidirectionalTwoLayerOutputMatchesTheEquations() {
        int b = 2;
        int t = 4;
        int in = 3;
        int h = 2;
        LSTM lstm = new LSTM(manager, in, h, 2, 0.0, true);
        lstm.eval();
        NDArray x = manager.randomNormal(new Shape(b, t, in));
        float[] got;
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            NDArray y = lstm.forward(x);
            assertThat(y.getShape()).isEqualTo(new Shape(b, t, 2 * h));
            got = y.toFloatArray();
        }
        double[][][] cur = toNested(x.toFloatArray(), b, t, in);
        for (int k = 0; k < 2; k++) {
            double[][][] fwd = reference(lstm, "_l" + k, cur, h, false);
            double[][][] bwd = reference(lstm, "_l" + k + "_reverse", cur, h, true);
            double[][][] next = new double[b][t][2 * h];
            for (int i = 0; i < b; i++) {
                for (int j = 0; j < t; j++) {
                    System.arraycopy(fwd[i][j], 0, next[i][j], 0, h);
                    System.arraycopy(bwd[i][j], 0, next[i][j], h, h);
                }
            }
            cur = next;
        }
        int n = 0;
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                for (int c = 0; c < 2 * h; c++) {
                    assertThat((double) got[n++]).as("[%d,%d,%d]", i, j, c).isCloseTo(cur[i][j][c], within(1e-5));
                }
            }
        }
    }

    @Test
    void gradientsReachEveryParameter() {
        LSTM lstm = new LSTM(manager, 3, 2, 2, 0.0, true);
        NDArray x = manager.randomNormal(new Shape(1, 3, 3));
        try (NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            try (GradientCollector gc = Torch.engine().newGradientCollector()) {
                gc.backward(lstm.forward(x).sum());
            }
            for (Map.Entry<String, Param> e : lstm.namedParameters().entrySet()) {
                NDArray g = e.getValue().data().getGradient();
                assertThat(g.abs().sum().getFloat()).as(e.getKey()).isGreaterThan(0f);
            }
        }
    }

    @Test
    void dropoutBetweenLayersOnlyInTraining() {
        LSTM lstm = new LSTM(manager, 3, 4, 2, 0.5, false);
        NDArray x = manager.randomNormal(new Shape(2, 5, 3));
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            lstm.eval();
            assertThat(lstm.forward(x).toFloatArray()).isEqualTo(lstm.forward(x).toFloatArray());
            lstm.train(true);
            assertThat(lstm.forward(x).toFloatArray()).isNotEqualTo(lstm.forward(x).toFloatArray());
        }
        assertThatThrownBy(() -> new LSTM(manager, 3, 4, 1, 1.0, false)).hasMessageContaining("dropout");
        assertThatThrownBy(() -> lstm.forward(manager.zeros(new Shape(1, 2, 5)))).hasMessageContaining("[batch, seq, 3]");
    }

    @Test
    void sequentialChainsChildrenByIndex() {
        Linear a = new Linear(manager, 3, 4, true);
        Linear c = new Linear(manager, 4, 2, false);
        Sequential seq = new Sequential(a, new ReLU(), c, new Tanh());
        assertThat(seq.namedParameters().keySet()).containsExactly("0.weight", "0.bias", "2.weight");
        NDArray x = manager.randomNormal(new Shape(5, 3));
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            float[] got = seq.forward(x).toFloatArray();
            float[] want = c.forward(a.forward(x).maximum(0f)).tanh().toFloatArray();
            assertThat(got).isEqualTo(want);
        }
    }

    private static double[][][] reference(LSTM lstm, String sfx, double[][][] x, int h, boolean reverse) {
        double[] wih = toDouble(lstm.param("weight_ih" + sfx).data().toFloatArray());
        double[] whh = toDouble(lstm.param("weight_hh" + sfx).data().toFloatArray());
        double[] bih = toDouble(lstm.param("bias_ih" + sfx).data().toFloatArray());
        double[] bhh = toDouble(lstm.param("bias_hh" + sfx).data().toFloatArray());
        int b = x.length;
        int t = x[0].length;
        int in = x[0][0].length;
        double[][][] out = new double[b][t][h];
        for (int i = 0; i < b; i++) {
            double[] hp = new double[h];
            double[] cp = new double[h];
            for (int step = 0; step < t; step++) {
                int j = reverse ? t - 1 - step : step;
                double[] gates = new double[4 * h];
                for (int r = 0; r < 4 * h; r++) {
                    double v = bih[r] + bhh[r];
                    for (int c = 0; c < in; c++) {
                        v += wih[r * in + c] * x[i][j][c];
                    }
                    for (int c = 0; c < h; c++) {
                        v += whh[r * h + c] * hp[c];
                    }
                    gates[r] = v;
                }
                double[] hn = new double[h];
                for (int u = 0; u < h; u++) {
                    double ig = sigmoid(gates[u]);
                    double fg = sigmoid(gates[h + u]);
                    double gg = Math.tanh(gates[2 * h + u]);
                    double og = sigmoid(gates[3 * h + u]);
                    cp[u] = fg * cp[u] + ig * gg;
                    hn[u] = og * Math.tanh(cp[u]);
                }
                hp = hn;
                out[i][j] = hn.clone();
            }
        }
        return out;
    }

    private static double sigmoid(double v) {
        return 1 / (1 + Math.exp(-v));
    }

    private static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    private static double[][][] toNested(float[] f, int b, int t, int c) {
        double[][][] out = new double[b][t][c];
        int n = 0;
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                for (int k = 0; k < c; k++) {
                    out[i][j][k] = f[n++];
                }
            }
        }
        return out;
    }
}
