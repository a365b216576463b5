package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Last-non-pad pooling, the three losses, and loading a plain GPT-2 checkpoint under a new head. */
class Gpt2SequenceClassificationTest {
    static final int PAD = 0;
    static final int H = 16;
    NDManager nd;
    NoGrad noGrad;
    NDScope scope;

    @BeforeEach
    void open() {
        Torch.manualSeed(11);
        nd = Torch.newManager();
        noGrad = NoGrad.enter();
        scope = new NDScope();
    }

    @AfterEach
    void close() {
        scope.close();
        noGrad.close();
        nd.close();
    }

    private static Gpt2Config.Builder small() {
        return Gpt2Config.builder().vocabSize(30).nPositions(16).nEmbd(H).nLayer(2).nHead(2).dropout(0.0);
    }

    /** {@code hidden[row, t] @ score.weight^T}, by hand from the model's last hidden state. */
    private static float[] scoreAt(float[] hidden, int row, int t, int seq, float[] w, int labels) {
        float[] out = new float[labels];
        for (int l = 0; l < labels; l++) {
            double s = 0;
            for (int j = 0; j < H; j++) {
                s += (double) hidden[(row * seq + t) * H + j] * w[l * H + j];
            }
            out[l] = (float) s;
        }
        return out;
    }

    @Test
    void logitsComeFromTheLastNonPadToken() {
        Gpt2ForSequenceClassification model =
                new Gpt2ForSequenceClassification(nd, small().padTokenId(PAD).numLabels(3).build());
        model.eval();
        int seq = 6;
        long[] ids = {
            5, 6, 7, 8, PAD, PAD,   // right-padded: the first pad is at 4, so position 3
            9, 4, 3, 2, 1, 7,       // no pad: argmax of all-false is 0, (0 - 1) mod 6 = 5
            PAD, PAD, 5, 6, 7, 8};  // left-padded: first pad at 0, so position 5 as well
        long[] mask = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
        ModelOutput out = model.forward(ModelInput.builder().inputIds(nd.create(ids, new Shape(3, seq)))
                .attentionMask(nd.create(mask, new Shape(3, seq))).outputHiddenStates(true).build());
        assertThat(out.logits().getShape()).isEqualTo(new Shape(3, 3));
        float[] logits = out.logits().toFloatArray();
        float[] hidden = out.hiddenStates().get(2).toFloatArray();
        float[] w = model.getParameter("score.weight").data().toFloatArray();

        int[] expectedPos = {3, 5, 5};
        for (int r = 0; r < 3; r++) {
            assertThat(maxAbsDiff(rowOf(logits, r, 3), scoreAt(hidden, r, expectedPos[r], seq, w, 3)))
                    .as("row %d pooled at %d", r, expectedPos[r]).isLessThanOrEqualTo(1e-5f);
        }
        // The case where pooling matters: the right-padded row's final (pad) position scores differently.
        assertThat(maxAbsDiff(rowOf(logits, 0, 3), scoreAt(hidden, 0, 5, seq, w, 3))).isGreaterThan(1e-3f);

        // And the pooled row equals the unpadded sequence run alone.
        float[] alone = model.forward(ModelInput.of(nd.create(new long[] {5, 6, 7, 8}, new Shape(1, 4))))
                .logits().toFloatArray();
        assertThat(maxAbsDiff(rowOf(logits, 0, 3), alone)).isLessThanOrEqualTo(1e-5f);
    }

    @Test
    void withoutPadTokenOnlyBatchesOfOneAreAccepted() {
        Gpt2ForSequenceClassification model = new Gpt2ForSequenceClassification(nd, small().build());
        model.eval();
        NDArray two = nd.create(new long[] {1, 2, 3, 4, 5, 6}, new Shape(2, 3));
        assertThatThrownBy(() -> model.forward(ModelInput.of(two)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("Cannot handle batch sizes > 1 if no padding token is defined")
                .hasMessageContaining("pad_token_id");
        ModelOutput one = model.forward(ModelInput.builder().inputIds(nd.create(new long[] {1, 2, 3}, new Shape(1, 3)))
                .outputHiddenStates(true).build());
        float[] w = model.getParameter("score.weight").data().toFloatArray();
        assertThat(maxAbsDiff(one.logits().toFloatArray(),
                scoreAt(one.hiddenStates().get(2).toFloatArray(), 0, 2, 3, w, 2))).isLessThanOrEqualTo(1e-5f);
    }

    @Test
    void singleLabelLossIsCrossEntropyOfThePooledLogits() {
        Gpt2ForSequenceClassification model =
                new Gpt2ForSequenceClassification(nd, small().padTokenId(PAD).numLabels(3).build());
        model.eval();
        NDArray ids = nd.create(new long[] {5, 6, 7, PAD, 9, 4, 3, 2}, new Shape(2, 4));
        long[] labels = {2, 0};
        ModelOutput out = model.forward(ModelInput.builder().inputIds(ids)
                .labels(nd.create(labels, new Shape(2))).build());
        float[] logits = out.logits().toFloatArray();
        double expected = 0;
        for (int r = 0; r < 2; r++) {
            expected -= Gpt2BehaviourTest.logSoftmax(rowOf(logits, r, 3))[(int) labels[r]];
        }
        expected /= 2;
        assertThat((double) out.loss().getFloat()).isCloseTo(expected, Offset.offset(1e-5));
    }

    @Test
    void oneLabelMeansRegressionWithMeanSquaredError() {
        Gpt2ForSequenceClassification model =
                new Gpt2ForSequenceClassification(nd, small().padTokenId(PAD).numLabels(1).build());
        model.eval();
        assertThat(model.gpt2Config().numLabels()).isEqualTo(1);
        NDArray ids = nd.create(new long[] {5, 6, 7, PAD, 9, 4, 3, 2}, new Shape(2, 4));
        float[] y = {0.5f, -1.25f};
        ModelOutput out = model.forward(ModelInput.builder().inputIds(ids).labels(nd.create(y, new Shape(2))).build());
        assertThat(out.logits().getShape()).isEqualTo(new Shape(2, 1));
        float[] logits = out.logits().toFloatArray();
        double expected = (Math.pow(logits[0] - y[0], 2) + Math.pow(logits[1] - y[1], 2)) / 2;
        assertThat((double) out.loss().getFloat()).isCloseTo(expected, Offset.offset(1e-6));
    }

    @Test
    void floatLabelsWithSeveralLabelsMeanMultiLabelBce() {
        Gpt2ForSequenceClassification model =
                new Gpt2ForSequenceClassification(nd, small().padTokenId(PAD).numLabels(2).build());
        model.eval();
        NDArray ids = nd.create(new long[] {5, 6, 7, PAD, 9, 4, 3, 2}, new Shape(2, 4));
        float[] y = {1, 0, 1, 1};
        ModelOutput out = model.forward(ModelInput.builder().inputIds(ids).labels(nd.create(y, new Shape(2, 2))).build());
        float[] x = out.logits().toFloatArray();
        double expected = 0;
        for (int i = 0; i < 4; i++) {
            double p = 1 / (1 + Math.exp(-x[i]));
            expected -= y[i] * Math.log(p) + (1 - y[i]) * Math.log(1 - p);
        }
        expected /= 4;
        assertThat((double) out.loss().getFloat()).isCloseTo(expected, Offset.offset(1e-5));
    }

    @Test
    void plainGpt2CheckpointLoadsUnderANewHead() throws Exception {
        try (Gpt2ForSequenceClassification cls = Gpt2ForSequenceClassification.fromPretrained(modelDir());
             Gpt2LMHeadModel lm = Gpt2LMHeadModel.fromPretrained(modelDir())) {
            assertThat(cls.outputEmbeddingsPath()).isNull();
            assertThat(cls.inputEmbeddings()).isSameAs(cls.getSubmodule("transformer.wte"));
            assertThat(cls.getParameter("score.weight").shape()).isEqualTo(new Shape(2, 64));
            // Loading defers init; the head the checkpoint lacks gets GPT-2's N(0, 0.02), never uninitialised memory.
            float[] score = cls.getParameter("score.weight").data().toFloatArray();
            double sq = 0;
            for (float v : score) {
                assertThat(v).isFinite();
                sq += v * v;
            }
            assertThat(Math.sqrt(sq / score.length)).isBetween(0.01, 0.03);
            long[][] ids = inputIds();
            NDArray input = nd.create(ids[0], new Shape(1, 10));
            float[] a = cls.forward(ModelInput.builder().inputIds(input).outputHiddenStates(true).build())
                    .hiddenStates().get(2).toFloatArray();
            float[] b = lm.forward(ModelInput.builder().inputIds(input).outputHiddenStates(true).build())
                    .hiddenStates().get(2).toFloatArray();
            assertThat(a).containsExactly(b);
        }
    }
}
