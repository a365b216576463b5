package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** Each activation_function name maps to the right formula (MLP with identity projections). */
class Gpt2ActivationTest {
    private static final float[] X = {-3f, -1f, -0.25f, 0f, 0.5f, 1f, 2.5f};

    private static float[] mlp(String act) {
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(4).nPositions(4).nEmbd(1).nHead(1).nLayer(1).nInner(1)
                .activationFunction(act).dropout(0).build();
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter()) {
            Module m = new Gpt2Model.Gpt2MLP(nd, cfg);
            for (String conv : new String[] {"c_fc", "c_proj"}) {
                m.getParameter(conv + ".weight").setData(nd.ones(m.getParameter(conv + ".weight").shape()));
                m.getParameter(conv + ".bias").setData(nd.zeros(m.getParameter(conv + ".bias").shape()));
            }
            m.eval();
            return m.forward(nd.create(X).reshape(X.length, 1)).toFloatArray();
        }
    }

    private static double erf(double x) {
        // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| <= 3 here).
        double sum = 0;
        double term = x;
        for (int n = 0; n < 200; n++) {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
        }
        return 2 / Math.sqrt(Math.PI) * sum;
    }

    @Test
    void activationsMatchTheirDefinitions() {
        float[] tanh = mlp("gelu_new");
        float[] pyTanh = mlp("gelu_pytorch_tanh");
        float[] exact = mlp("gelu");
        float[] relu = mlp("relu");
        for (int i = 0; i < X.length; i++) {
            double x = X[i];
            double geluTanh = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
            double geluErf = 0.5 * x * (1 + erf(x / Math.sqrt(2)));
            assertThat((double) tanh[i]).as("gelu_new(%s)", x).isCloseTo(geluTanh, within(1e-6));
            assertThat((double) pyTanh[i]).as("gelu_pytorch_tanh(%s)", x).isCloseTo(geluTanh, within(1e-6));
            assertThat((double) exact[i]).as("gelu(%s)", x).isCloseTo(geluErf, within(1e-6));
            assertThat((double) relu[i]).as("relu(%s)", x).isEqualTo(Math.max(0, x));
        }
        // The two GELUs are distinguishable at this precision (so the dispatch is really tested).
        assertThat(Math.abs(tanh[1] - exact[1])).isGreaterThan(1e-4f);
    }
}
