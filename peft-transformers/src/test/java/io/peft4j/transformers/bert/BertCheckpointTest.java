package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.transformers.TaskHeadCheckpoints;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static io.peft4j.transformers.bert.BertTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Loading BERT checkpoints: bad tensors fail by file and key; other heads, bare bases and legacy buffers load. */
class BertCheckpointTest {
    @TempDir
    Path tmp;

    @Test
    void missingTensorNamesFileAndKey() throws Exception {
        Path dir = editedReference(tmp.resolve("m"), t -> t.remove("bert.encoder.layer.1.output.dense.weight"));
        assertThatThrownBy(() -> BertForSequenceClassification.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("missing keys [bert.encoder.layer.1.output.dense.weight]");
    }

    @Test
    void wrongShapeNamesKeyAndBothShapes() throws Exception {
        Path dir = editedReference(tmp.resolve("m"), t -> t.put("bert.embeddings.token_type_embeddings.weight",
                TensorData.ofFloats(new float[3 * 64], 3, 64)));
        assertThatThrownBy(() -> BertForSequenceClassification.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("'bert.embeddings.token_type_embeddings.weight'")
                .hasMessageContaining("(3, 64)").hasMessageContaining("(2, 64)");
    }

    @Test
    void unknownTensorInsideTheEncoderFails() throws Exception {
        Path dir = editedReference(tmp.resolve("m"), t -> t.put("bert.encoder.layer.0.attention.self.extra.weight",
                TensorData.ofFloats(new float[4], 4)));
        assertThatThrownBy(() -> BertModel.fromPretrained(dir))
                .hasMessageContaining("unexpected keys [bert.encoder.layer.0.attention.self.extra.weight]");
    }

    /** BertForPreTraining / BertForMaskedLM checkpoints carry cls.*: skipped with a warning; legacy buffers silently. */
    @Test
    void preTrainingHeadIsSkippedWithAWarning() throws Exception {
        Path dir = editedReference(tmp.resolve("m"), t -> {
            t.put("cls.predictions.bias", TensorData.ofFloats(new float[256], 256));
            t.put("cls.predictions.transform.dense.weight", TensorData.ofFloats(new float[64 * 64], 64, 64));
            t.put("cls.seq_relationship.weight", TensorData.ofFloats(new float[2 * 64], 2, 64));
            t.put("bert.embeddings.position_ids", TensorData.ofLongs(new long[64], 1, 64));
        });
        TaskHeadCheckpoints.Report[] report = new TaskHeadCheckpoints.Report[1];
        String log = capturingStderr(() -> {
            try (NDManager nd = Torch.newManager()) {
                BertForSequenceClassification m = new BertForSequenceClassification(nd,
                        BertConfig.of(io.peft4j.nn.model.ModelConfig.read(dir.resolve("config.json"))));
                report[0] = m.loadWeights(dir);
                assertThat(m.getParameter("classifier.weight").data().toFloatArray())
                        .containsExactly(referenceTensors().get("classifier.weight").toFloatArray());
            }
        });
        assertThat(report[0].unused()).containsExactlyInAnyOrder("cls.predictions.bias",
                "cls.predictions.transform.dense.weight", "cls.seq_relationship.weight");
        assertThat(report[0].newlyInitialized()).isEmpty();
        assertThat(log).contains("were not used when initializing BertForSequenceClassification")
                .contains("cls.seq_relationship.weight").doesNotContain("position_ids");
    }

    /** A masked-LM checkpoint has no pooler: the classifier model loads, and the log says what is random. */
    @Test
    void checkpointWithoutPoolerIsReported() throws Exception {
        Path dir = editedReference(tmp.resolve("m"), t -> {
            t.remove("bert.pooler.dense.weight");
            t.remove("bert.pooler.dense.bias");
            t.remove("classifier.weight");
            t.remove("classifier.bias");
        });
        TaskHeadCheckpoints.Report[] report = new TaskHeadCheckpoints.Report[1];
        String log = capturingStderr(() -> {
            try (BertForSequenceClassification m = BertForSequenceClassification.fromPretrained(dir)) {
                // Newly initialised weights get transformers' init (zero bias, N(0, 0.02)), not the layer default.
                assertThat(m.getParameter("classifier.bias").data().toFloatArray()).containsOnly(0f);
                assertThat(m.getParameter("bert.pooler.dense.bias").data().toFloatArray()).containsOnly(0f);
                float[] w = m.getParameter("bert.pooler.dense.weight").data().toFloatArray();
                double sq = 0;
                for (float v : w) {
                    sq += v * v;
                }
                assertThat(Math.sqrt(sq / w.length)).isBetween(0.015, 0.025);
                report[0] = m.loadWeights(dir);
            }
        });
        assertThat(report[0].newlyInitialized()).containsExactlyInAnyOrder("bert.pooler.dense.weight",
                "bert.pooler.dense.bias", "classifier.weight", "classifier.bias");
        assertThat(log).contains("has no pooler weights").contains("add_pooling_layer=False")
                .contains("bert.pooler.dense is randomly initialised").contains("newly initialized");
        // A BertModel built without a pooler takes the same checkpoint without complaint.
        try (NDManager nd = Torch.newManager()) {
            BertModel noPooler = new BertModel(nd, BertConfig.of(io.peft4j.nn.model.ModelConfig.read(
                    dir.resolve("config.json"))), false);
            TaskHeadCheckpoints.Report r = noPooler.loadWeights(dir);
            assertThat(r.newlyInitialized()).isEmpty();
            assertThat(noPooler.hasChild("pooler")).isFalse();
        }
    }

    /** A bare BertModel checkpoint (no "bert." prefix) loads into both classes; the classifier is then new. */
    @Test
    void bareBaseCheckpointLoadsIntoBothClasses() throws Exception {
        Map<String, TensorData> bare = new LinkedHashMap<>();
        referenceTensors().forEach((k, v) -> {
            if (k.startsWith("bert.")) {
                bare.put(k.substring(5), v);
            }
        });
        Path dir = writeModelDir(tmp.resolve("bare"), Files.readString(modelDir().resolve("config.json")), bare);
        long[][] ids = inputIds();
        try (BertModel base = BertModel.fromPretrained(dir);
             BertForSequenceClassification cls = BertForSequenceClassification.fromPretrained(dir);
             SafetensorsFile ref = SafetensorsFile.open(resource("outputs/bert-base.safetensors"));
             NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(2, 10));
            float[] expected = ref.toFloatArray("hidden_states.2");
            assertThat(firstViolation(base.forward(ModelInput.of(input)).logits().toFloatArray(), expected, 1e-4, 1e-4))
                    .isEqualTo(-1);
            assertThat(firstViolation(cls.bert().forward(ModelInput.of(input)).logits().toFloatArray(), expected,
                    1e-4, 1e-4)).isEqualTo(-1);
            assertThat(cls.loadWeights(dir).newlyInitialized()).containsExactly("classifier.weight", "classifier.bias");
        }
    }

    /** What a model saves loads back into a fresh one, bit for bit. */
    @Test
    void stateDictRoundTrip() throws Exception {
        try (BertForSequenceClassification m = BertForSequenceClassification.fromPretrained(modelDir())) {
            Path dir = writeModelDir(tmp.resolve("saved"), m.config().toJsonString(),
                    io.peft4j.transformers.Checkpoints.toTensorData(m.stateDict()));
            try (BertForSequenceClassification back = BertForSequenceClassification.fromPretrained(dir)) {
                m.stateDict().forEach((k, v) -> assertThat(back.stateDict().get(k).toFloatArray())
                        .as(k).containsExactly(v.toFloatArray()));
            }
        }
    }
}
