package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** KV cache, padding and position ids, causal loss, on the reference checkpoint. */
class Gpt2BehaviourTest {
    static Gpt2LMHeadModel model;
    static NDManager nd;
    static long[][] ids;
    static int vocab;
    NoGrad noGrad;
    NDScope scope;

    @BeforeAll
    static void load() throws Exception {
        model = Gpt2LMHeadModel.fromPretrained(modelDir());
        nd = Torch.newManager();
        ids = inputIds();
        vocab = model.gpt2Config().vocabSize();
    }

    @AfterAll
    static void close() {
        model.close();
        nd.close();
    }

    @BeforeEach
    void open() {
        noGrad = NoGrad.enter();
        scope = new NDScope();
    }

    @AfterEach
    void closeScope() {
        scope.close();
        noGrad.close();
    }

    private static NDArray row(long[] tokens) {
        return nd.create(tokens, new Shape(1, tokens.length));
    }

    @Test
    void cachedDecodingMatchesFullForward() {
        long[] tokens = ids[0];
        int prefix = 6;
        float[] full = model.forward(ModelInput.of(row(tokens))).logits().toFloatArray();

        ModelOutput out = model.forward(ModelInput.of(row(Arrays.copyOf(tokens, prefix))));
        float[] first = out.logits().toFloatArray();
        for (int t = 0; t < prefix; t++) {
            assertThat(maxAbsDiff(rowOf(first, t, vocab), rowOf(full, t, vocab))).as("prefix position %d", t)
                    .isLessThanOrEqualTo(1e-5f);
        }
        List<NDArray[]> cache = out.pastKeyValues();
        for (int t = prefix; t < tokens.length; t++) {
            assertThat(cache).hasSize(2);
            // {key, value} of [B, heads, past, head_dim], the Llama convention.
            assertThat(cache.get(0)[0].getShape()).isEqualTo(new Shape(1, 4, t, 16));
            long[] mask = new long[t + 1];
            Arrays.fill(mask, 1);
            ModelOutput step = model.forward(ModelInput.builder().inputIds(row(new long[] {tokens[t]}))
                    .attentionMask(nd.create(mask, new Shape(1, t + 1))).pastKeyValues(cache).build());
            assertThat(step.logits().getShape()).isEqualTo(new Shape(1, 1, vocab));
            assertThat(maxAbsDiff(step.logits().toFloatArray(), rowOf(full, t, vocab))).as("cached step %d", t)
                    .isLessThanOrEqualTo(1e-5f);
            cache = step.pastKeyValues();
        }
    }

    @Test
    void leftPaddedRowMatchesUnpaddedRowWithGenerationPositionIds() {
        int pad = 3;
        int t = ids[1].length;
        long[] tokens = Arrays.copyOf(ids[1], t - pad);
        long[] batch = new long[2 * t];
        long[] mask = new long[2 * t];
        System.arraycopy(ids[0], 0, batch, 0, t);
        Arrays.fill(mask, 0, t, 1);
        System.arraycopy(tokens, 0, batch, t + pad, tokens.length);
        Arrays.fill(mask, t + pad, 2 * t, 1);
        Shape shape = new Shape(2, t);
        NDArray attn = nd.create(mask, shape);

        NDArray positions = Gpt2Model.positionIdsFromAttentionMask(attn);
        // cumsum(mask) - 1, padding set to 1: what GPT2LMHeadModel.prepare_inputs_for_generation feeds.
        assertThat(positions.toLongArray()).containsExactly(
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                1, 1, 1, 0, 1, 2, 3, 4, 5, 6);
        float[] logits = model.forward(ModelInput.builder().inputIds(nd.create(batch, shape)).attentionMask(attn)
                .positionIds(positions).build()).logits().toFloatArray();
        float[] alone = model.forward(ModelInput.of(row(tokens))).logits().toFloatArray();
        float[] row0 = model.forward(ModelInput.of(row(ids[0]))).logits().toFloatArray();
        for (float v : logits) {
            assertThat(v).isFinite();
        }
        float lastDiff = maxAbsDiff(rowOf(logits, 2 * t - 1, vocab), rowOf(alone, tokens.length - 1, vocab));
        System.out.printf("gpt2 left-padded last-token max abs diff %.3g%n", lastDiff);
        assertThat(lastDiff).isLessThanOrEqualTo(1e-4f);
        for (int i = 0; i < tokens.length; i++) {
            assertThat(maxAbsDiff(rowOf(logits, t + pad + i, vocab), rowOf(alone, i, vocab)))
                    .as("left-padded position %d", i).isLessThanOrEqualTo(1e-4f);
        }
        for (int i = 0; i < t; i++) {
            assertThat(maxAbsDiff(rowOf(logits, i, vocab), rowOf(row0, i, vocab))).as("unpadded row position %d", i)
                    .isLessThanOrEqualTo(1e-4f);
        }
    }

    @Test
    void forwardWithoutPositionIdsUsesArangeEvenWhenPadded() {
        // transformers 4.45 GPT2Model.forward ignores the mask for positions: a left-padded row is shifted.
        int pad = 3;
        long[] tokens = Arrays.copyOf(ids[1], 7);
        long[] padded = new long[10];
        long[] mask = new long[10];
        System.arraycopy(tokens, 0, padded, pad, tokens.length);
        Arrays.fill(mask, pad, 10, 1);
        float[] arange = model.forward(ModelInput.builder().inputIds(row(padded))
                .attentionMask(nd.create(mask, new Shape(1, 10))).build()).logits().toFloatArray();
        long[] shiftedPositions = {0, 0, 0, 3, 4, 5, 6, 7, 8, 9};
        float[] explicit = model.forward(ModelInput.builder().inputIds(row(padded))
                .attentionMask(nd.create(mask, new Shape(1, 10)))
                .positionIds(nd.create(shiftedPositions, new Shape(1, 10))).build()).logits().toFloatArray();
        float[] alone = model.forward(ModelInput.of(row(tokens))).logits().toFloatArray();
        // The real tokens sit at positions 3..9 either way: same logits...
        assertThat(maxAbsDiff(rowOf(arange, 9, vocab), rowOf(explicit, 9, vocab))).isLessThanOrEqualTo(1e-5f);
        // ...which differ from the unpadded run (positions 0..6).
        assertThat(maxAbsDiff(rowOf(arange, 9, vocab), rowOf(alone, 6, vocab))).isGreaterThan(1e-3f);
    }

    @Test
    void hiddenStatesFollowTransformersConvention() {
        ModelOutput out = model.forward(ModelInput.builder().inputIds(row(ids[0])).outputHiddenStates(true).build());
        List<NDArray> hs = out.hiddenStates();
        assertThat(hs).hasSize(3);
        // hidden_states[0] = wte(ids) + wpe(arange): computed here from the weights directly.
        NDArray wte = model.getParameter("transformer.wte.weight").data();
        NDArray wpe = model.getParameter("transformer.wpe.weight").data();
        float[] wteF = wte.toFloatArray();
        float[] wpeF = wpe.toFloatArray();
        float[] h0 = hs.get(0).toFloatArray();
        int e = 64;
        for (int t = 0; t < ids[0].length; t++) {
            for (int j = 0; j < e; j++) {
                assertThat(h0[t * e + j]).isEqualTo(wteF[(int) ids[0][t] * e + j] + wpeF[t * e + j]);
            }
        }
        // The last entry feeds lm_head: logits = h_last @ wte^T (tied).
        float[] expected = hs.get(2).matMul(wte.transpose()).toFloatArray();
        assertThat(maxAbsDiff(out.logits().toFloatArray(), expected)).isLessThanOrEqualTo(1e-5f);
    }

    @Test
    void causalLossIsMeanNextTokenCrossEntropyIgnoringMinus100() {
        long[] labels = ids[0].clone();
        labels[4] = -100;
        NDArray logitsNd = model.forward(ModelInput.of(row(ids[0]))).logits();
        float loss = model.forward(ModelInput.builder().inputIds(row(ids[0])).labels(row(labels)).build())
                .loss().getFloat();
        float[] logits = logitsNd.toFloatArray();
        double sum = 0;
        int n = 0;
        for (int t = 0; t + 1 < labels.length; t++) {
            if (labels[t + 1] == -100) {
                continue;
            }
            sum += -logSoftmax(rowOf(logits, t, vocab))[(int) labels[t + 1]];
            n++;
        }
        assertThat(n).isEqualTo(8);
        assertThat((double) loss).isCloseTo(sum / n, org.assertj.core.data.Offset.offset(1e-5));
    }

    @Test
    void greedyGenerationWithTheCacheMatchesFullRecomputation() {
        long[] prompt = Arrays.copyOf(ids[0], 4);
        long[] generated = io.peft4j.transformers.Generation.greedy(model, prompt, 6, null);
        assertThat(generated).hasSize(10).startsWith(prompt);
        long[] seq = prompt.clone();
        for (int step = 0; step < 6; step++) {
            float[] last = rowOf(model.forward(ModelInput.of(row(seq))).logits().toFloatArray(), seq.length - 1, vocab);
            int best = 0;
            for (int v = 1; v < vocab; v++) {
                if (last[v] > last[best]) {
                    best = v;
                }
            }
            seq = Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = best;
        }
        assertThat(generated).containsExactly(seq);
    }

    @Test
    void tooLongSequenceFailsClearly() {
        long[] tokens = new long[65];
        assertThatThrownBy(() -> model.forward(ModelInput.of(row(tokens))))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("n_positions 64");
    }

    static double[] logSoftmax(float[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) {
            max = Math.max(max, v);
        }
        double s = 0;
        for (float v : x) {
            s += Math.exp(v - max);
        }
        double lse = max + Math.log(s);
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] - lse;
        }
        return out;
    }
}
