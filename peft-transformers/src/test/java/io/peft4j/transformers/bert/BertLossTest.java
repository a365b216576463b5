package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.Test;

import java.util.Collection;

import static io.peft4j.transformers.bert.BertTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;

/** The classification losses against sums written out by hand from the returned logits; training runs. */
class BertLossTest {
    private static BertConfig.Builder small() {
        return BertConfig.builder().vocabSize(40).hiddenSize(16).numHiddenLayers(1).numAttentionHeads(2)
                .intermediateSize(32).maxPositionEmbeddings(16);
    }

    private static final long[] IDS = {2, 5, 7, 9, 11, 3, 4, 6, 8, 10, 12, 13};

    /** Logits and loss of one forward pass (eval mode, so dropout does not interfere). */
    private static float[][] run(BertConfig cfg, NDManager nd, java.util.function.Function<NDManager, NDArray> labels) {
        Torch.manualSeed(11);
        try (NDManager m = Torch.newManager()) {
            BertForSequenceClassification model = new BertForSequenceClassification(m, cfg);
            model.eval();
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                ModelOutput out = model.forward(ModelInput.builder().inputIds(nd.create(IDS, new Shape(2, 6)))
                        .labels(labels.apply(nd)).build());
                return new float[][] {out.logits().toFloatArray(), {out.loss().getFloat()}};
            }
        }
    }

    @Test
    void singleLabelCrossEntropy() {
        try (NDManager nd = Torch.newManager()) {
            float[][] r = run(small().numLabels(3).build(), nd, m -> m.create(new long[] {2, 0}));
            float[] z = r[0];
            double expected = (logSumExp(z, 0, 3) - z[2] + logSumExp(z, 3, 3) - z[3]) / 2;
            System.out.printf("bert CE loss %.6f (hand %.6f)%n", r[1][0], expected);
            assertThat((double) r[1][0]).isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-5));
            // -100 is ignored: only row 0 counts.
            float[][] ignored = run(small().numLabels(3).build(), nd, m -> m.create(new long[] {2, -100}));
            assertThat((double) ignored[1][0]).isCloseTo(logSumExp(z, 0, 3) - z[2],
                    org.assertj.core.data.Offset.offset(1e-5));
        }
    }

    @Test
    void oneLabelIsRegression() {
        try (NDManager nd = Torch.newManager()) {
            float[][] r = run(small().numLabels(1).build(), nd, m -> m.create(new float[] {0.5f, -1.25f}));
            float[] z = r[0];
            assertThat(z).hasSize(2);
            double expected = (sq(z[0] - 0.5) + sq(z[1] + 1.25)) / 2;
            assertThat((double) r[1][0]).isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-6));
        }
    }

    @Test
    void floatLabelsAreMultiLabelBce() {
        float[] y = {1, 0, 1, 0, 0, 1};
        try (NDManager nd = Torch.newManager()) {
            // Inferred from float labels with num_labels > 1 ...
            float[][] inferred = run(small().numLabels(3).build(), nd, m -> m.create(y, new Shape(2, 3)));
            // ... or configured; integer 0/1 labels then still mean multi-label.
            float[][] configured = run(small().numLabels(3).problemType("multi_label_classification").build(), nd,
                    m -> m.create(new long[] {1, 0, 1, 0, 0, 1}, new Shape(2, 3)));
            float[] z = inferred[0];
            double expected = 0;
            for (int i = 0; i < z.length; i++) {
                double p = 1 / (1 + Math.exp(-z[i]));
                expected -= y[i] * Math.log(p) + (1 - y[i]) * Math.log(1 - p);
            }
            expected /= z.length;
            assertThat((double) inferred[1][0]).isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-5));
            assertThat((double) configured[1][0]).isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-5));
        }
    }

    @Test
    void configuredRegressionWithSeveralOutputs() {
        float[] y = {0.1f, -0.2f, 0.3f, 0.4f};
        try (NDManager nd = Torch.newManager()) {
            float[][] r = run(small().numLabels(2).problemType("regression").build(), nd,
                    m -> m.create(y, new Shape(2, 2)));
            double expected = 0;
            for (int i = 0; i < y.length; i++) {
                expected += sq(r[0][i] - y[i]);
            }
            assertThat((double) r[1][0]).isCloseTo(expected / y.length, org.assertj.core.data.Offset.offset(1e-6));
        }
    }

    /** Gradients reach every layer (finite, through mask, pooler and dropout) and the loss goes down. */
    @Test
    void trainingReducesTheLoss() {
        Torch.manualSeed(3);
        try (NDManager nd = Torch.newManager()) {
            BertForSequenceClassification model = new BertForSequenceClassification(nd, small().numLabels(2).build());
            model.train(true);
            model.getParameter("bert.encoder.layer.0.intermediate.dense.weight").requiresGrad(false);
            float[] frozen = model.getParameter("bert.encoder.layer.0.intermediate.dense.weight").data().toFloatArray();
            NDArray ids = nd.create(IDS, new Shape(2, 6));
            NDArray mask = nd.create(new long[] {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, new Shape(2, 6));
            NDArray labels = nd.create(new long[] {1, 0});
            Collection<Param> params = model.namedParameters().values();
            AdamW opt = AdamW.builder().lr(0.01f).build();
            float first = 0;
            float last = 0;
            for (int step = 0; step < 20; step++) {
                TrainStep.Result r = TrainStep.run(() -> model.forward(ModelInput.builder().inputIds(ids)
                        .attentionMask(mask).labels(labels).build()).loss(), opt, params);
                assertThat(r.gradNorm()).isPositive().isFinite();
                if (step == 0) {
                    first = r.loss();
                }
                last = r.loss();
            }
            System.out.printf("bert training loss %.4f -> %.4f%n", first, last);
            assertThat(last).isLessThan(first * 0.5f);
            assertThat(model.getParameter("bert.encoder.layer.0.intermediate.dense.weight").data().toFloatArray())
                    .containsExactly(frozen);
        }
    }

    private static double logSumExp(float[] z, int from, int n) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = from; i < from + n; i++) {
            max = Math.max(max, z[i]);
        }
        double s = 0;
        for (int i = from; i < from + n; i++) {
            s += Math.exp(z[i] - max);
        }
        return max + Math.log(s);
    }

    private static double sq(double x) {
        return x * x;
    }
}
