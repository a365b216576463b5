package io.peft4j.nn.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class Linear4bitTest {
    static NDManager manager;

    @BeforeAll
    static void init() {
        Torch.manualSeed(5);
        manager = Torch.newManager();
    }

    @AfterAll
    static void close() {
        manager.close();
    }

    static float[] normal(int n, long seed) {
        Random r = new Random(seed);
        float[] w = new float[n];
        for (int i = 0; i < n; i++) {
            w[i] = (float) r.nextGaussian();
        }
        return w;
    }

    /** DJL dequantisation must give exactly the Java reference, for odd sizes, partial blocks and nested padding. */
    @Test
    void djlDequantisationMatchesTheJavaReferenceExactly() {
        int[][] cases = {{3, 35, 32, 0}, {3, 35, 32, 1}, {64, 300, 32, 1}, {16, 64, 64, 0}, {5, 7, 64, 1}};
        for (int[] c : cases) {
            float[] w = normal(c[0] * c[1], c[0] * 31L + c[1]);
            Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {c[0], c[1]}, "nf4", c[2], c[3] == 1);
            float[] ref = Quantizer.dequantize4bit(p.data(), p.state());
            Linear4bit q = new Linear4bit(manager, p, null);
            try (NDScope s = new NDScope(); NoGrad g = NoGrad.enter()) {
                NDArray d = q.dequantize();
                assertThat(d.getShape()).isEqualTo(new Shape(c[0], c[1]));
                assertThat(d.toFloatArray()).as("case %dx%d bs %d dq %d", c[0], c[1], c[2], c[3]).containsExactly(ref);
            }
            assertThat(q.weight().data().getDataType()).isEqualTo(DataType.UINT8);
            assertThat(q.weight().shape()).isEqualTo(new Shape((c[0] * c[1] + 1) / 2, 1));
            assertThat(q.weight().requiresGrad()).isFalse();
            assertThatThrownBy(() -> q.weight().requiresGrad(true)).hasMessageContaining("cannot require grad")
                    .hasMessageContaining("Linear4bit weight is frozen");
        }
    }

    /** Quantising with DJL ops gives the Java reference's codes and absmax, byte for byte. */
    @Test
    void djlQuantisationMatchesTheJavaReferenceExactly() {
        int[][] cases = {{3, 35, 32, 0, 0}, {64, 300, 64, 1, 0}, {5, 7, 64, 1, 1}, {16, 64, 64, 0, 1}};
        for (int[] c : cases) {
            float[] w = normal(c[0] * c[1], c[0] * 7L + c[1]);
            java.util.Arrays.fill(w, 0, Math.min(w.length, 32), 0f); // an all-zero block
            String type = c[4] == 1 ? "fp4" : "nf4";
            Quantizer.Packed ref = Quantizer.quantize4bit(w, new long[] {c[0], c[1]}, type, c[2], c[3] == 1);
            Linear lin = new Linear(manager, c[1], c[0], false);
            lin.weight().setData(manager.create(w, new Shape(c[0], c[1])));
            Linear4bit q = Linear4bit.quantize(lin, type, c[2], c[3] == 1);
            Quantizer.Packed got = q.toPacked();
            String what = java.util.Arrays.toString(c);
            assertThat(got.data()).as(what).containsExactly(ref.data());
            if (c[3] == 1) {
                assertThat(got.state().absmaxCodes()).as(what).containsExactly(ref.state().absmaxCodes());
                assertThat(got.state().nestedAbsmax()).as(what).containsExactly(ref.state().nestedAbsmax());
                assertThat(got.state().offset()).as(what).isEqualTo(ref.state().offset());
            } else {
                assertThat(got.state().absmax()).as(what).containsExactly(ref.state().absmax());
            }
        }
    }

    @Test
    void forwardIsLinearOnTheDequantisedWeightAndGradientsReachTheInputOnly() {
        Linear lin = new Linear(manager, 64, 6, true);
        Linear4bit q = Linear4bit.quantize(lin, "nf4", 64, true);
        assertThat(q.bias()).isSameAs(lin.bias());
        NDArray x = manager.randomNormal(new Shape(2, 3, 64));
        x.setRequiresGradient(true);
        try (NDScope s = new NDScope(); GradientCollector gc = manager.getEngine().newGradientCollector()) {
            NDArray y = q.forward(x);
            NDArray expect;
            try (NoGrad g = NoGrad.enter()) {
                expect = x.matMul(q.dequantize().transpose()).add(lin.bias().data());
            }
            assertThat(y.getShape()).isEqualTo(new Shape(2, 3, 6));
            float[] a = y.toFloatArray();
            float[] b = expect.toFloatArray();
            for (int i = 0; i < a.length; i++) {
                assertThat(a[i]).isCloseTo(b[i], within(1e-4f));
            }
            gc.backward(y.sum());
            // d(sum y)/dx = column sums of the dequantised weight, even though forward closed its handle of W
            float[] colSums;
            try (NoGrad g = NoGrad.enter()) {
                colSums = q.dequantize().sum(new int[] {0}).toFloatArray();
            }
            float[] grad = x.getGradient().toFloatArray();
            for (int i = 0; i < grad.length; i++) {
                assertThat(grad[i]).isCloseTo(colSums[i % 64], within(1e-5f));
            }
        }
        // quantisation error of the layer output is bounded by the NF4 error of the weight
        try (NDScope s = new NDScope(); NoGrad g = NoGrad.enter()) {
            NDArray wErr = q.dequantize().sub(lin.weight().data());
            double rel = Math.sqrt(wErr.square().sum().getFloat() / lin.weight().data().square().sum().getFloat());
            assertThat(rel).isBetween(0.03, 0.15);
        }
    }

    @Test
    void storesUnderZeroPointSixBytesPerParameter() {
        float[] w = normal(512 * 512, 3);
        Linear4bit plain = new Linear4bit(manager, Quantizer.quantize4bit(w, new long[] {512, 512}, "nf4", 64, false), null);
        Linear4bit dq = new Linear4bit(manager, Quantizer.quantize4bit(w, new long[] {512, 512}, "nf4", 64, true), null);
        // packed 0.5 + absmax 4/64 + the 16-value code book
        assertThat(plain.weightBytes()).isEqualTo(512 * 256 + 4096 * 4 + 16 * 4);
        // packed 0.5 + 1 byte code per 64 + 16 nested absmax floats + the 256-value nested map + code book
        assertThat(dq.weightBytes()).isEqualTo(512 * 256 + 4096 + 16 * 4 + 256 * 4 + 16 * 4);
        assertThat((double) dq.weightBytes() / (512 * 512)).isLessThan(0.53);
    }

    @Test
    void requantisingAndToLinearKeepTheLayerShapeAndSettings() {
        Linear lin = new Linear(manager, 64, 8, false);
        Linear4bit q = Linear4bit.quantize(lin, "fp4", 32, false);
        Linear back = q.toLinear();
        try (NDScope s = new NDScope(); NoGrad g = NoGrad.enter()) {
            assertThat(back.weight().data().toFloatArray()).containsExactly(q.dequantize().toFloatArray());
            q.requantize(back.weight().data());
            // quantising a dequantised weight again is exact (every value is code * absmax of its block)
            assertThat(q.dequantize().toFloatArray()).containsExactly(back.weight().data().toFloatArray(), within(0f)); // ±0 both decode to 0
        }
        assertThat(q.quantType()).isEqualTo("fp4");
        assertThat(q.blocksize()).isEqualTo(32);
        assertThatThrownBy(() -> q.setQuantized(manager,
                Quantizer.quantize4bit(new float[64 * 4], new long[] {4, 64}, "nf4", 64, false)))
                .hasMessageContaining("[4, 64] does not match the layer's [8, 64]");
    }
}
