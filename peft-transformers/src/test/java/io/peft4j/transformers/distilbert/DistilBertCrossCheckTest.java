package io.peft4j.transformers.distilbert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.transformers.TaskHeadCheckpoints;
import io.peft4j.transformers.bert.BertModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.peft4j.transformers.bert.BertTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * DistilBERT has no reference outputs here, so it is checked against the HF-verified BERT: with token type
 * 0 everywhere, BERT's embeddings are {@code LN(word + type[0] + pos)}; a DistilBERT whose position table is
 * {@code pos + type[0]} and whose layers carry BERT's weights computes exactly the same encoder (both are
 * post-norm with eps 1e-12 and GELU).
 */
class DistilBertCrossCheckTest {
    @TempDir
    static Path tmp;
    static Path distilDir;
    static BertModel bert;
    static DistilBertForSequenceClassification distil;
    static NDManager nd;
    static long[][] ids;

    static DistilBertConfig tinyConfig() {
        return DistilBertConfig.builder().vocabSize(256).dim(64).nLayers(2).nHeads(4).hiddenDim(128)
                .maxPositionEmbeddings(64).build();
    }

    /** The tiny BERT's weights under DistilBERT names, as a DistilBertModel checkpoint would hold them. */
    static Map<String, TensorData> bertAsDistilBert() throws Exception {
        Map<String, TensorData> b = referenceTensors();
        Map<String, TensorData> d = new LinkedHashMap<>();
        d.put("distilbert.embeddings.word_embeddings.weight", b.get("bert.embeddings.word_embeddings.weight"));
        float[] pos = b.get("bert.embeddings.position_embeddings.weight").toFloatArray();
        float[] type0 = b.get("bert.embeddings.token_type_embeddings.weight").toFloatArray();
        int dim = 64;
        float[] folded = new float[pos.length];
        for (int i = 0; i < pos.length; i++) {
            folded[i] = pos[i] + type0[i % dim];
        }
        d.put("distilbert.embeddings.position_embeddings.weight", TensorData.ofFloats(folded, pos.length / dim, dim));
        d.put("distilbert.embeddings.LayerNorm.weight", b.get("bert.embeddings.LayerNorm.weight"));
        d.put("distilbert.embeddings.LayerNorm.bias", b.get("bert.embeddings.LayerNorm.bias"));
        Map<String, String> names = Map.of(
                "attention.q_lin", "attention.self.query",
                "attention.k_lin", "attention.self.key",
                "attention.v_lin", "attention.self.value",
                "attention.out_lin", "attention.output.dense",
                "sa_layer_norm", "attention.output.LayerNorm",
                "ffn.lin1", "intermediate.dense",
                "ffn.lin2", "output.dense",
                "output_layer_norm", "output.LayerNorm");
        for (int layer = 0; layer < 2; layer++) {
            for (Map.Entry<String, String> e : names.entrySet()) {
                for (String p : List.of("weight", "bias")) {
                    d.put("distilbert.transformer.layer." + layer + "." + e.getKey() + "." + p,
                            b.get("bert.encoder.layer." + layer + "." + e.getValue() + "." + p));
                }
            }
        }
        return d;
    }

    @BeforeAll
    static void load() throws Exception {
        distilDir = writeModelDir(tmp.resolve("distil"), tinyConfig().modelConfig().toJsonString(), bertAsDistilBert());
        bert = BertModel.fromPretrained(modelDir());
        distil = DistilBertForSequenceClassification.fromPretrained(distilDir);
        nd = Torch.newManager();
        ids = inputIds();
    }

    @AfterAll
    static void close() {
        bert.close();
        distil.close();
        nd.close();
    }

    @Test
    void sameEncoderAsBertWithFoldedTokenTypes() {
        long[] mask = new long[20];
        Arrays.fill(mask, 1);
        Arrays.fill(mask, 16, 20, 0); // row 1 right-padded: the masks must agree too
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            NDArray attn = nd.create(mask, new Shape(2, 10));
            ModelOutput b = bert.forward(ModelInput.builder().inputIds(input).attentionMask(attn)
                    .outputHiddenStates(true).build());
            DistilBertModel.Output d = distil.distilbert().encode(ModelInput.builder().inputIds(input)
                    .attentionMask(attn).outputHiddenStates(true).build());
            assertThat(d.hiddenStates()).hasSize(3);
            for (int i = 0; i < 3; i++) {
                float[] x = d.hiddenStates().get(i).toFloatArray();
                float[] y = b.hiddenStates().get(i).toFloatArray();
                System.out.printf("distilbert vs bert hidden_states.%d: max abs diff %.3g%n", i, maxAbsDiff(x, y));
                assertThat(firstViolation(x, y, 1e-5, 0)).as("hidden_states.%d", i).isEqualTo(-1);
            }
            assertThat(d.lastHiddenState().toFloatArray()).containsExactly(d.hiddenStates().get(2).toFloatArray());
        }
    }

    /** The head, written out: classifier(relu(pre_classifier(h[:, 0]))), against the model's logits. */
    @Test
    void classificationHeadOnTheFirstToken() {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            float[] logits = distil.forward(ModelInput.of(input)).logits().toFloatArray();
            float[] h = distil.distilbert().encode(ModelInput.of(input)).lastHiddenState().toFloatArray();
            float[] w1 = distil.getParameter("pre_classifier.weight").data().toFloatArray();
            float[] b1 = distil.getParameter("pre_classifier.bias").data().toFloatArray();
            float[] w2 = distil.getParameter("classifier.weight").data().toFloatArray();
            float[] b2 = distil.getParameter("classifier.bias").data().toFloatArray();
            int dim = 64;
            int labels = b2.length;
            assertThat(labels).isEqualTo(2);
            float[] expected = new float[2 * labels];
            for (int row = 0; row < 2; row++) {
                int first = row * 10 * dim; // token 0 of this row
                double[] pre = new double[dim];
                for (int o = 0; o < dim; o++) {
                    double s = b1[o];
                    for (int i = 0; i < dim; i++) {
                        s += w1[o * dim + i] * h[first + i];
                    }
                    pre[o] = Math.max(0, s);
                }
                for (int c = 0; c < labels; c++) {
                    double s = b2[c];
                    for (int i = 0; i < dim; i++) {
                        s += w2[c * dim + i] * pre[i];
                    }
                    expected[row * labels + c] = (float) s;
                }
            }
            assertThat(firstViolation(logits, expected, 1e-5, 1e-4)).isEqualTo(-1);
        }
    }

    @Test
    void paddedRowEqualsTheRowAlone() {
        long[] padded = Arrays.copyOf(Arrays.copyOf(ids[1], 7), 10);
        long[] mask = new long[20];
        Arrays.fill(mask, 0, 17, 1);
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray batch = nd.create(flat(new long[][] {ids[0], padded}), new Shape(2, 10));
            DistilBertModel.Output both = distil.distilbert().encode(ModelInput.builder().inputIds(batch)
                    .attentionMask(nd.create(mask, new Shape(2, 10))).build());
            DistilBertModel.Output alone = distil.distilbert().encode(
                    ModelInput.of(nd.create(Arrays.copyOf(ids[1], 7), new Shape(1, 7))));
            float[] x = both.lastHiddenState().get("1, :7").toFloatArray();
            float[] y = alone.lastHiddenState().get("0").toFloatArray();
            System.out.printf("distilbert padding: hidden max abs diff %.3g%n", maxAbsDiff(x, y));
            assertThat(firstViolation(x, y, 1e-5, 0)).isEqualTo(-1);
        }
    }

    @Test
    void rejectsInputsDistilBertDoesNotTake() {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            assertThatThrownBy(() -> distil.forward(ModelInput.builder().inputIds(input)
                    .tokenTypeIds(nd.zeros(new Shape(2, 10), DataType.INT64)).build()))
                    .hasMessageContaining("token_type_ids must be null");
            assertThatThrownBy(() -> distil.forward(ModelInput.of(nd.ones(new Shape(1, 65), DataType.INT64))))
                    .hasMessageContaining("exceeds max_position_embeddings 64");
        }
    }

    /** A DistilBertForMaskedLM-style checkpoint: vocab_* skipped with a warning; the head is new. */
    @Test
    void maskedLmHeadIsSkippedAndClassifierIsNew() throws Exception {
        Map<String, TensorData> t = bertAsDistilBert();
        t.put("vocab_transform.weight", TensorData.ofFloats(new float[64 * 64], 64, 64));
        t.put("vocab_layer_norm.weight", TensorData.ofFloats(new float[64], 64));
        t.put("vocab_projector.bias", TensorData.ofFloats(new float[256], 256));
        Path dir = writeModelDir(tmp.resolve("mlm"), tinyConfig().modelConfig().toJsonString(), t);
        try (NDManager m = Torch.newManager()) {
            DistilBertForSequenceClassification model = new DistilBertForSequenceClassification(m, tinyConfig());
            TaskHeadCheckpoints.Report r = model.loadWeights(dir);
            assertThat(r.unused()).containsExactlyInAnyOrder("vocab_transform.weight", "vocab_layer_norm.weight",
                    "vocab_projector.bias");
            assertThat(r.newlyInitialized()).containsExactlyInAnyOrder("pre_classifier.weight",
                    "pre_classifier.bias", "classifier.weight", "classifier.bias");
            // And a bare DistilBertModel loads the prefixed checkpoint.
            DistilBertModel base = new DistilBertModel(m, tinyConfig());
            assertThat(base.loadWeights(dir).newlyInitialized()).isEmpty();
            assertThat(base.getParameter("transformer.layer.1.ffn.lin2.weight").data().toFloatArray())
                    .containsExactly(t.get("distilbert.transformer.layer.1.ffn.lin2.weight").toFloatArray());
        }
    }

    @Test
    void missingTensorAndWrongShapeNameFileAndKey() throws Exception {
        Map<String, TensorData> missing = bertAsDistilBert();
        missing.remove("distilbert.transformer.layer.0.attention.v_lin.bias");
        Path a = writeModelDir(tmp.resolve("missing"), tinyConfig().modelConfig().toJsonString(), missing);
        assertThatThrownBy(() -> DistilBertForSequenceClassification.fromPretrained(a))
                .hasMessageContaining(a.toString())
                .hasMessageContaining("missing keys [distilbert.transformer.layer.0.attention.v_lin.bias]");
        Map<String, TensorData> wrong = bertAsDistilBert();
        wrong.put("distilbert.transformer.layer.1.ffn.lin1.weight", TensorData.ofFloats(new float[64 * 64], 64, 64));
        Path b = writeModelDir(tmp.resolve("wrong"), tinyConfig().modelConfig().toJsonString(), wrong);
        assertThatThrownBy(() -> DistilBertModel.fromPretrained(b))
                .hasMessageContaining(b.toString())
                .hasMessageContaining("'distilbert.transformer.layer.1.ffn.lin1.weight'")
                .hasMessageContaining("(64, 64)").hasMessageContaining("(128, 64)");
    }
}
