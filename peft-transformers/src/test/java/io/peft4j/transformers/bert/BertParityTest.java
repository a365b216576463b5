package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;

import static io.peft4j.transformers.bert.BertTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The tiny HF BertForSequenceClassification (2 layers, 4 heads) against transformers 4.45: the classifier
 * logits {@code [2, 2]} and hidden_states 0 (embeddings) .. 2 (last layer).
 */
class BertParityTest {
    static BertForSequenceClassification model;
    static NDManager nd;

    @BeforeAll
    static void load() throws Exception {
        model = BertForSequenceClassification.fromPretrained(modelDir());
        nd = Torch.newManager();
    }

    @AfterAll
    static void close() {
        model.close();
        nd.close();
    }

    @Test
    void logitsAndHiddenStatesMatchTransformers() throws Exception {
        long[][] ids = inputIds();
        try (SafetensorsFile ref = SafetensorsFile.open(resource("outputs/bert-base.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(ids.length, ids[0].length));
            ModelOutput out = model.forward(ModelInput.builder().inputIds(input)
                    .attentionMask(nd.ones(input.getShape())).outputHiddenStates(true).build());
            assertThat(out.logits().getShape()).isEqualTo(new Shape(2, model.bertConfig().numLabels()));
            check("logits", out.logits().toFloatArray(), ref.toFloatArray("logits"));
            List<NDArray> hs = out.hiddenStates();
            assertThat(hs).hasSize(model.bertConfig().numHiddenLayers() + 1);
            for (int i = 0; i < hs.size(); i++) {
                check("hidden_states." + i, hs.get(i).toFloatArray(), ref.toFloatArray("hidden_states." + i));
            }
            assertThat(ref.names()).hasSize(hs.size() + 1);
        }
    }

    /** BertModel loads the same checkpoint (stripping "bert.", skipping the classifier) and gives the same encoder. */
    @Test
    void baseModelFromTheClassifierCheckpoint() throws Exception {
        long[][] ids = inputIds();
        try (BertModel base = BertModel.fromPretrained(modelDir());
             SafetensorsFile ref = SafetensorsFile.open(resource("outputs/bert-base.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(ids.length, ids[0].length));
            ModelOutput out = base.forward(ModelInput.of(input));
            check("BertModel last hidden state", out.logits().toFloatArray(), ref.toFloatArray("hidden_states.2"));
            BertModel.Output enc = base.encode(ModelInput.of(input));
            BertModel.Output viaHead = model.bert().encode(ModelInput.of(input));
            assertThat(enc.poolerOutput().toFloatArray()).containsExactly(viaHead.poolerOutput().toFloatArray());
        }
    }

    /**
     * peft's prefix tuning on this model (shared hf-reference/adapters/bert-prefix, skipped when absent): the
     * prompt embeddings [6, layers*2*hidden] become per-layer key/value prefixes, the mask gains 6 ones, and
     * transformers shifts the positions by 6. Done by hand here; it checks the past-key/value path of
     * {@link BertModel#encode} against the real thing.
     */
    @Test
    void prefixKeyValuesMatchPeftPrefixTuning() throws Exception {
        String shared = System.getProperty("peft4j.shared");
        java.nio.file.Path ref = shared == null ? null : java.nio.file.Path.of(shared, "hf-reference");
        org.junit.jupiter.api.Assumptions.assumeTrue(ref != null
                        && java.nio.file.Files.isRegularFile(ref.resolve("outputs/bert-prefix.safetensors")),
                "shared hf-reference not found (set -Dpeft4j.shared); skipping");
        BertConfig c = model.bertConfig();
        int p = 6;
        long[][] ids = inputIds();
        try (BertForSequenceClassification m = BertForSequenceClassification.fromPretrained(modelDir());
             SafetensorsFile adapter = SafetensorsFile.open(ref.resolve("adapters/bert-prefix/adapter_model.safetensors"));
             SafetensorsFile out = SafetensorsFile.open(ref.resolve("outputs/bert-prefix.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            m.getParameter("classifier.weight").setData(adapter.toNDArray("base_model.classifier.weight", m.manager()));
            m.getParameter("classifier.bias").setData(adapter.toNDArray("base_model.classifier.bias", m.manager()));
            // [P, layers*2*hidden] -> [B, P, layers*2, heads, hd] -> permute(2, 0, 3, 1, 4): [layers*2, B, heads, P, hd]
            NDArray prompt = adapter.toNDArray("prompt_embeddings", nd).expandDims(0)
                    .broadcast(2, p, (long) c.numHiddenLayers() * 2 * c.hiddenSize())
                    .reshape(2, p, c.numHiddenLayers() * 2L, c.numAttentionHeads(), c.headDim())
                    .transpose(2, 0, 3, 1, 4);
            java.util.List<NDArray[]> past = new java.util.ArrayList<>();
            for (int l = 0; l < c.numHiddenLayers(); l++) {
                past.add(new NDArray[] {prompt.get(2L * l), prompt.get(2L * l + 1)});
            }
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            ModelOutput o = m.forward(ModelInput.builder().inputIds(input).pastKeyValues(past)
                    .attentionMask(nd.ones(new Shape(2, p + 10))).outputHiddenStates(true).build());
            check("prefix logits", o.logits().toFloatArray(), out.toFloatArray("logits"));
            for (int i = 0; i < o.hiddenStates().size(); i++) {
                check("prefix hidden_states." + i, o.hiddenStates().get(i).toFloatArray(),
                        out.toFloatArray("hidden_states." + i));
            }
        }
    }

    private static void check(String name, float[] actual, float[] ref) {
        assertThat(actual).hasSameSizeAs(ref);
        System.out.printf("bert parity %s: max abs diff %.3g%n", name, maxAbsDiff(actual, ref));
        int bad = firstViolation(actual, ref, 1e-4, 1e-4);
        assertThat(bad).as("%s[%d]: java %s vs hf %s", name, bad, bad < 0 ? 0 : actual[bad], bad < 0 ? 0 : ref[bad])
                .isEqualTo(-1);
    }
}
