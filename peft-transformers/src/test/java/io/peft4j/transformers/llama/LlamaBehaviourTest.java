package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.peft4j.transformers.llama.LlamaTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Padding, loss, KV cache, GQA and tying, on the reference checkpoint and small random models. */
class LlamaBehaviourTest {
    static LlamaForCausalLM model;
    static NDManager nd;
    static long[][] ids;
    NoGrad noGrad;
    NDScope scope;

    @BeforeAll
    static void load() throws Exception {
        model = LlamaForCausalLM.fromPretrained(modelDir());
        nd = Torch.newManager();
        ids = inputIds();
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

    /** Logits {@code [T][V]} of one row of a batch. */
    private static float[][] rowLogits(NDArray logits, int row) {
        long t = logits.getShape().get(1);
        int v = (int) logits.getShape().get(2);
        float[] all = logits.get(row).toFloatArray();
        float[][] out = new float[(int) t][];
        for (int i = 0; i < t; i++) {
            out[i] = Arrays.copyOfRange(all, i * v, (i + 1) * v);
        }
        return out;
    }

    private static void assertClose(float[] actual, float[] expected, double tol, String what) {
        assertThat(maxAbsDiff(actual, expected)).as(what).isLessThanOrEqualTo((float) tol);
    }

    @Test
    void leftPaddedRowMatchesUnpaddedRunAndStaysFinite() {
        int pad = 3;
        int real = ids[1].length - pad;
        long[] tokens = Arrays.copyOf(ids[1], real);
        long[] padded = new long[ids[1].length];
        long[] mask = new long[ids[1].length];
        for (int i = 0; i < real; i++) {
            padded[pad + i] = tokens[i];
            mask[pad + i] = 1;
        }
        long[] batch = new long[2 * padded.length];
        long[] batchMask = new long[2 * padded.length];
        System.arraycopy(ids[0], 0, batch, 0, padded.length);
        Arrays.fill(batchMask, 0, padded.length, 1);
        System.arraycopy(padded, 0, batch, padded.length, padded.length);
        System.arraycopy(mask, 0, batchMask, padded.length, padded.length);
        Shape shape = new Shape(2, padded.length);
        NDArray logits = model.forward(ModelInput.builder().inputIds(nd.create(batch, shape))
                .attentionMask(nd.create(batchMask, shape)).build()).logits();
        assertThat(logits.isNaN().any().getBoolean()).isFalse();
        assertThat(logits.isInfinite().any().getBoolean()).isFalse();

        float[][] alone = rowLogits(model.forward(ModelInput.of(row(tokens))).logits(), 0);
        float[][] inBatch = rowLogits(logits, 1);
        for (int i = 0; i < real; i++) {
            assertClose(inBatch[pad + i], alone[i], 1e-4, "left-padded position " + i);
        }
        // Row 0 has no padding: unaffected by its neighbour.
        float[][] row0 = rowLogits(model.forward(ModelInput.of(row(ids[0]))).logits(), 0);
        float[][] row0Batch = rowLogits(logits, 0);
        for (int i = 0; i < row0.length; i++) {
            assertClose(row0Batch[i], row0[i], 1e-4, "unpadded row position " + i);
        }
    }

    @Test
    void rightPaddedRowMatchesUnpaddedRun() {
        int real = 6;
        long[] tokens = Arrays.copyOf(ids[1], real);
        long[] padded = Arrays.copyOf(tokens, ids[1].length);
        long[] mask = new long[ids[1].length];
        Arrays.fill(mask, 0, real, 1);
        NDArray logits = model.forward(ModelInput.builder().inputIds(row(padded)).attentionMask(row(mask)).build())
                .logits();
        float[][] alone = rowLogits(model.forward(ModelInput.of(row(tokens))).logits(), 0);
        float[][] inBatch = rowLogits(logits, 0);
        for (int i = 0; i < real; i++) {
            assertClose(inBatch[i], alone[i], 1e-4, "right-padded position " + i);
        }
        assertThat(logits.isNaN().any().getBoolean()).isFalse();
    }

    @Test
    void lossEqualsHandComputedShiftedCrossEntropy() {
        long[] flat = flat(ids);
        NDArray input = nd.create(flat, new Shape(ids.length, ids[0].length));
        ModelOutput out = model.forward(ModelInput.builder().inputIds(input).labels(input).build());
        int t = ids[0].length;
        int v = (int) out.logits().getShape().get(2);
        float[] logits = out.logits().toFloatArray();
        double total = 0;
        int count = 0;
        for (int b = 0; b < ids.length; b++) {
            for (int i = 0; i < t - 1; i++) {
                int base = (b * t + i) * v;
                double max = Double.NEGATIVE_INFINITY;
                for (int c = 0; c < v; c++) {
                    max = Math.max(max, logits[base + c]);
                }
                double sum = 0;
                for (int c = 0; c < v; c++) {
                    sum += Math.exp(logits[base + c] - max);
                }
                double logp = logits[base + (int) ids[b][i + 1]] - max - Math.log(sum);
                total -= logp;
                count++;
            }
        }
        assertThat(out.loss().getShape().size()).isEqualTo(1);
        assertThat((double) out.loss().getFloat()).isCloseTo(total / count, org.assertj.core.data.Offset.offset(1e-5));
    }

    @Test
    void ignoredLabelsAreLeftOutOfTheMean() {
        NDArray input = row(ids[0]);
        long[] labels = ids[0].clone();
        labels[5] = -100;
        labels[6] = -100;
        float masked = model.forward(ModelInput.builder().inputIds(input).labels(row(labels)).build()).loss().getFloat();
        float full = model.forward(ModelInput.builder().inputIds(input).labels(input).build()).loss().getFloat();
        assertThat(masked).isFinite().isNotEqualTo(full);
    }

    @Test
    void kvCacheGivesTheSameLogitsAsAFullForward() {
        float[][] full = rowLogits(model.forward(ModelInput.of(row(ids[0]))).logits(), 0);
        int prefix = 6;
        ModelOutput first = model.forward(ModelInput.of(row(Arrays.copyOf(ids[0], prefix))));
        List<NDArray[]> cache = first.pastKeyValues();
        assertThat(cache).hasSize(model.llamaConfig().numHiddenLayers());
        assertThat(cache.get(0)[0].getShape()).isEqualTo(new Shape(1, 2, prefix, 16));
        for (int i = prefix; i < ids[0].length; i++) {
            long[] mask = new long[i + 1];
            Arrays.fill(mask, 1);
            ModelOutput step = model.forward(ModelInput.builder().inputIds(row(new long[] {ids[0][i]}))
                    .attentionMask(row(mask)).pastKeyValues(cache).build());
            assertClose(rowLogits(step.logits(), 0)[0], full[i], 1e-4, "cached step " + i);
            cache = step.pastKeyValues();
        }
    }

    @Test
    void inputsEmbedsGiveTheSameLogitsAsInputIds() {
        NDArray input = row(ids[1]);
        NDArray embeds = model.inputEmbeddings().forward(input);
        float[] a = model.forward(ModelInput.of(input)).logits().toFloatArray();
        float[] b = model.forward(ModelInput.builder().inputsEmbeds(embeds).build()).logits().toFloatArray();
        assertThat(b).containsExactly(a);
    }

    @Test
    void groupedQueryAttentionEqualsMultiHeadWithRepeatedKvWeights() {
        LlamaConfig gqa = LlamaConfig.builder().vocabSize(50).hiddenSize(32).intermediateSize(48)
                .numHiddenLayers(2).numAttentionHeads(4).numKeyValueHeads(2).build();
        LlamaConfig mha = LlamaConfig.builder().vocabSize(50).hiddenSize(32).intermediateSize(48)
                .numHiddenLayers(2).numAttentionHeads(4).numKeyValueHeads(4).build();
        try (NDManager m1 = Torch.newManager(); NDManager m2 = Torch.newManager()) {
            LlamaForCausalLM a = new LlamaForCausalLM(m1, gqa);
            LlamaForCausalLM b = new LlamaForCausalLM(m2, mha);
            Map<String, NDArray> state = new LinkedHashMap<>();
            int d = gqa.headDim();
            a.stateDict().forEach((k, v) -> {
                if (k.endsWith("k_proj.weight") || k.endsWith("v_proj.weight")) {
                    // Query head h reads KV head h / 2: duplicate each KV head's rows.
                    List<NDArray> parts = new ArrayList<>();
                    for (int h = 0; h < 4; h++) {
                        parts.add(v.get((h / 2) * d + ":" + (h / 2 + 1) * d));
                    }
                    state.put(k, ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(parts), 0));
                } else {
                    state.put(k, v);
                }
            });
            b.loadStateDict(state, true);
            NDArray input = nd.create(new long[] {1, 7, 3, 9, 4, 11, 2, 8}, new Shape(2, 4));
            float[] la = a.forward(ModelInput.of(input)).logits().toFloatArray();
            float[] lb = b.forward(ModelInput.of(input)).logits().toFloatArray();
            assertClose(la, lb, 1e-5, "gqa vs mha");
        }
    }

    @Test
    void tiedEmbeddingsShareOneParamCountedOnce() {
        LlamaConfig.Builder cfg = LlamaConfig.builder().vocabSize(40).hiddenSize(16).intermediateSize(24)
                .numHiddenLayers(1).numAttentionHeads(2);
        try (NDManager m = Torch.newManager()) {
            LlamaForCausalLM tied = new LlamaForCausalLM(m, cfg.tieWordEmbeddings(true).build());
            LlamaForCausalLM untied = new LlamaForCausalLM(m, cfg.tieWordEmbeddings(false).build());
            Param head = tied.getParameter("lm_head.weight");
            assertThat(head).isSameAs(tied.getParameter("model.embed_tokens.weight"));
            assertThat(tied.isTied()).isTrue();
            assertThat(untied.isTied()).isFalse();
            assertThat(tied.numParameters()).isEqualTo(untied.numParameters() - 40 * 16);
            assertThat(tied.namedParameters()).doesNotContainKey("lm_head.weight");
            assertThat(tied.stateDict()).doesNotContainKey("lm_head.weight").containsKey("model.embed_tokens.weight");
            assertThat(untied.stateDict()).containsKey("lm_head.weight");
            // Logits are the hidden states projected on the embedding matrix itself.
            Map<String, NDArray> state = new LinkedHashMap<>(tied.stateDict());
            untied.loadStateDict(withHead(state), true);
            NDArray input = nd.create(new long[] {1, 5, 9, 3}, new Shape(1, 4));
            assertThat(tied.forward(ModelInput.of(input)).logits().toFloatArray())
                    .containsExactly(untied.forward(ModelInput.of(input)).logits().toFloatArray());
        }
    }

    private static Map<String, NDArray> withHead(Map<String, NDArray> state) {
        state.put("lm_head.weight", state.get("model.embed_tokens.weight"));
        return state;
    }

    @Test
    void stateDictUsesTransformersNamesWithoutRotaryBuffer() {
        assertThat(model.stateDict().keySet()).allMatch(k -> !k.contains("rotary_emb"));
        assertThat(model.stateDict()).containsKeys("model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight",
                "model.layers.0.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight");
        assertThat(model.getSubmodule("model.rotary_emb").buffers()).containsKey("inv_freq");
        assertThat(model.outputEmbeddingsPath()).isEqualTo("lm_head");
    }

    @Test
    void childrenAreLookedUpAtCallTime() {
        NDArray input = row(ids[0]);
        float[] before = model.forward(ModelInput.of(input)).logits().toFloatArray();
        String path = "model.layers.0.self_attn.q_proj";
        io.peft4j.nn.Module original = model.getSubmodule(path);
        try {
            model.setSubmodule(path, new io.peft4j.nn.Module() {
                @Override
                public NDArray forward(NDArray x) {
                    return original.forward(x).mul(2f);
                }
            });
            float[] after = model.forward(ModelInput.of(input)).logits().toFloatArray();
            assertThat(maxAbsDiff(after, before)).isGreaterThan(1e-3f);
        } finally {
            model.setSubmodule(path, original);
        }
    }

    @Test
    void maskOfTheWrongLengthIsRejected() {
        assertThatThrownBy(() -> model.forward(ModelInput.builder().inputIds(row(ids[0]))
                .attentionMask(row(new long[] {1, 1, 1})).build()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("attention_mask");
    }

    @Test
    void repeatedForwardsInScopesLeaveNoArraysBehind() {
        NDArray input = nd.create(flat(ids), new Shape(ids.length, ids[0].length));
        NDArray mask = nd.ones(input.getShape());
        int modelBefore = 0;
        int inputBefore = 0;
        for (int i = 0; i < 20; i++) {
            try (NDScope s = new NDScope()) {
                model.forward(ModelInput.builder().inputIds(input).attentionMask(mask).labels(input)
                        .outputHiddenStates(true).build()).loss().getFloat();
            }
            if (i == 1) {
                modelBefore = model.manager().getManagedArrays().size();
                inputBefore = nd.getManagedArrays().size();
            }
        }
        assertThat(model.manager().getManagedArrays()).hasSize(modelBefore);
        assertThat(nd.getManagedArrays()).hasSize(inputBefore);
    }
}
