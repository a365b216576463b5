package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static io.peft4j.transformers.bert.BertTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Padding masks, token types, prefix key/values and dropout on the tiny HF BERT. */
class BertBehaviourTest {
    static BertForSequenceClassification model;
    static NDManager nd;
    static long[][] ids;

    @BeforeAll
    static void load() throws Exception {
        model = BertForSequenceClassification.fromPretrained(modelDir());
        nd = Torch.newManager();
        ids = inputIds();
    }

    @AfterAll
    static void close() {
        model.close();
        nd.close();
    }

    @Test
    void rightPaddedRowEqualsTheUnpaddedRowAlone() {
        int real = 6;
        long[] padded = Arrays.copyOf(Arrays.copyOf(ids[1], real), 10); // pad id 0 after 6 real tokens
        long[] mask = new long[20];
        Arrays.fill(mask, 0, 10, 1);
        Arrays.fill(mask, 10, 10 + real, 1);
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray batch = nd.create(flat(new long[][] {ids[0], padded}), new Shape(2, 10));
            ModelOutput both = model.forward(ModelInput.builder().inputIds(batch)
                    .attentionMask(nd.create(mask, new Shape(2, 10))).outputHiddenStates(true).build());
            ModelOutput alone = model.forward(ModelInput.builder()
                    .inputIds(nd.create(Arrays.copyOf(ids[1], real), new Shape(1, real))).outputHiddenStates(true)
                    .build());
            float[] logitsPadded = both.logits().get("1").toFloatArray();
            float[] logitsAlone = alone.logits().get("0").toFloatArray();
            System.out.printf("bert padding: logits max abs diff %.3g%n", maxAbsDiff(logitsPadded, logitsAlone));
            assertThat(firstViolation(logitsPadded, logitsAlone, 1e-5, 0)).isEqualTo(-1);
            NDArray lastBoth = both.hiddenStates().get(2);
            NDArray lastAlone = alone.hiddenStates().get(2);
            float[] realPadded = lastBoth.get("1, :" + real).toFloatArray();
            float[] realAlone = lastAlone.get("0").toFloatArray();
            System.out.printf("bert padding: real-token hidden max abs diff %.3g%n", maxAbsDiff(realPadded, realAlone));
            assertThat(firstViolation(realPadded, realAlone, 1e-5, 0)).isEqualTo(-1);
            // Without the mask the padding is attended to and the [CLS] state moves (the tiny classifier's
            // logits are ~1e-2, so the O(1) hidden state is the discriminating quantity).
            ModelOutput unmasked = model.forward(ModelInput.builder().inputIds(batch).outputHiddenStates(true).build());
            assertThat(maxAbsDiff(unmasked.hiddenStates().get(2).get("1, 0").toFloatArray(),
                    lastAlone.get("0, 0").toFloatArray())).isGreaterThan(1e-2f);
            // The unpadded row 0 is untouched by its neighbour's padding.
            ModelOutput row0 = model.forward(ModelInput.of(nd.create(ids[0], new Shape(1, 10))));
            assertThat(firstViolation(both.logits().get("0").toFloatArray(), row0.logits().get("0").toFloatArray(),
                    1e-5, 0)).isEqualTo(-1);
        }
    }

    @Test
    void tokenTypeIdsChangeTheOutputAndDefaultToZeros() {
        long[] types = new long[20];
        Arrays.fill(types, 5, 10, 1);
        Arrays.fill(types, 15, 20, 1);
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            float[] none = model.bert().encode(ModelInput.of(input)).lastHiddenState().toFloatArray();
            float[] zeros = model.bert().encode(ModelInput.builder().inputIds(input)
                    .tokenTypeIds(nd.zeros(new Shape(2, 10), ai.djl.ndarray.types.DataType.INT64)).build())
                    .lastHiddenState().toFloatArray();
            ModelInput withSegments = ModelInput.builder().inputIds(input)
                    .tokenTypeIds(nd.create(types, new Shape(2, 10))).build();
            float[] segments = model.bert().encode(withSegments).lastHiddenState().toFloatArray();
            assertThat(zeros).containsExactly(none);
            System.out.printf("bert token types: last hidden state moves by %.3g%n", maxAbsDiff(segments, none));
            assertThat(maxAbsDiff(segments, none)).isGreaterThan(1e-2f);
            // The classifier sees them too.
            assertThat(model.forward(withSegments).logits().toFloatArray())
                    .isNotEqualTo(model.forward(ModelInput.of(input)).logits().toFloatArray());
            assertThatThrownBy(() -> model.forward(ModelInput.builder().inputIds(input)
                    .tokenTypeIds(nd.zeros(new Shape(2, 9), ai.djl.ndarray.types.DataType.INT64)).build()))
                    .hasMessageContaining("token_type_ids must have shape (2, 10)");
        }
    }

    /**
     * Prefix key/values whose mask entries are 0 are invisible, so what remains of them is the position
     * shift transformers applies: the output equals a plain run with positions P .. P+T-1.
     */
    @Test
    void pastKeyValuesShiftPositionsAndJoinTheKeys() {
        BertConfig c = model.bertConfig();
        int p = 3;
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            List<NDArray[]> past = new ArrayList<>();
            for (int i = 0; i < c.numHiddenLayers(); i++) {
                Shape s = new Shape(2, c.numAttentionHeads(), p, c.headDim());
                past.add(new NDArray[] {nd.randomNormal(s), nd.randomNormal(s)});
            }
            long[] mask = new long[2 * (p + 10)];
            for (int b = 0; b < 2; b++) {
                Arrays.fill(mask, b * (p + 10) + p, (b + 1) * (p + 10), 1);
            }
            float[] hidden = model.bert().forward(ModelInput.builder().inputIds(input).pastKeyValues(past)
                    .attentionMask(nd.create(mask, new Shape(2, p + 10))).build()).logits().toFloatArray();
            NDArray shifted = nd.arange(p, p + 10).toType(ai.djl.ndarray.types.DataType.INT64, false).reshape(1, 10);
            float[] expected = model.bert().forward(ModelInput.builder().inputIds(input).positionIds(shifted).build())
                    .logits().toFloatArray();
            assertThat(firstViolation(hidden, expected, 1e-5, 0)).isEqualTo(-1);
            // Visible prefixes do change the result.
            float[] visible = model.bert().forward(ModelInput.builder().inputIds(input).pastKeyValues(past).build())
                    .logits().toFloatArray();
            assertThat(maxAbsDiff(visible, expected)).isGreaterThan(1e-2f);
        }
    }

    @Test
    void dropoutOnlyInTrainingMode() {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            float[] a = model.bert().forward(ModelInput.of(input)).logits().toFloatArray();
            float[] b = model.bert().forward(ModelInput.of(input)).logits().toFloatArray();
            assertThat(a).containsExactly(b);
            model.train(true);
            try {
                float[] t = model.bert().forward(ModelInput.of(input)).logits().toFloatArray();
                assertThat(maxAbsDiff(t, a)).isGreaterThan(1e-2f);
            } finally {
                model.eval();
            }
        }
    }

    @Test
    void rejectsTooLongSequencesAndBadMasks() {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray tooLong = nd.ones(new Shape(1, 65), ai.djl.ndarray.types.DataType.INT64);
            assertThatThrownBy(() -> model.forward(ModelInput.of(tooLong)))
                    .hasMessageContaining("exceeds max_position_embeddings 64");
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            assertThatThrownBy(() -> model.forward(ModelInput.builder().inputIds(input)
                    .attentionMask(nd.ones(new Shape(2, 9))).build()))
                    .hasMessageContaining("attention_mask must have shape (2, 10)");
        }
    }
}
