package io.peft4j.transformers.distilbert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.transformers.bert.BertConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class DistilBertConfigTest {
    @TempDir
    Path tmp;

    /** distilbert-base-uncased's config.json as published, with a 3-label id2label added. */
    private static final String BASE_UNCASED = """
            {
              "activation": "gelu",
              "architectures": ["DistilBertForMaskedLM"],
              "attention_dropout": 0.1,
              "dim": 768,
              "dropout": 0.1,
              "hidden_dim": 3072,
              "id2label": {"0": "neg", "1": "neu", "2": "pos"},
              "initializer_range": 0.02,
              "max_position_embeddings": 512,
              "model_type": "distilbert",
              "n_heads": 12,
              "n_layers": 6,
              "pad_token_id": 0,
              "qa_dropout": 0.1,
              "seq_classif_dropout": 0.2,
              "sinusoidal_pos_embds": false,
              "tie_weights_": true,
              "transformers_version": "4.45.0",
              "vocab_size": 30522
            }
            """;

    private static DistilBertConfig.Builder small() {
        return DistilBertConfig.builder().vocabSize(30).dim(16).nLayers(1).nHeads(2).hiddenDim(24)
                .maxPositionEmbeddings(12);
    }

    @Test
    void readsAPublishedConfig() throws Exception {
        Path file = tmp.resolve("config.json");
        Files.writeString(file, BASE_UNCASED);
        DistilBertConfig c = DistilBertConfig.of(ModelConfig.read(file));
        assertThat(c.vocabSize()).isEqualTo(30522);
        assertThat(c.dim()).isEqualTo(768);
        assertThat(c.nLayers()).isEqualTo(6);
        assertThat(c.nHeads()).isEqualTo(12);
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.hiddenDim()).isEqualTo(3072);
        assertThat(c.activation()).isEqualTo(BertConfig.Activation.GELU);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(512);
        assertThat(c.seqClassifDropout()).isEqualTo(0.2);
        assertThat(c.padTokenId()).isZero();
        assertThat(c.numLabels()).isEqualTo(3);
    }

    @Test
    void missingRequiredFieldNamesFileAndKey() throws Exception {
        Path file = tmp.resolve("config.json");
        Files.writeString(file, BASE_UNCASED.replace("\"hidden_dim\": 3072,", ""));
        assertThatThrownBy(() -> DistilBertConfig.of(ModelConfig.read(file)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(file.toString()).hasMessageContaining("'hidden_dim'");
    }

    @Test
    void rejectsUnsupportedSettings() {
        assertThatThrownBy(() -> small().sinusoidalPosEmbds(true).build())
                .hasMessageContaining("sinusoidal_pos_embds").hasMessageContaining("not supported");
        assertThatThrownBy(() -> small().activation("tanh").build()).hasMessageContaining("activation 'tanh'");
        assertThatThrownBy(() -> small().nHeads(5).build()).hasMessageContaining("dim (16) is not a multiple of n_heads (5)");
        assertThatThrownBy(() -> small().set("model_type", "bert").build())
                .hasMessageContaining("model_type 'bert' is not a DistilBERT model");
        assertThat(small().activation("relu").build().activation()).isEqualTo(BertConfig.Activation.RELU);
    }

    /** The head's loss is the shared transformers rule: cross-entropy for integer labels. */
    @Test
    void classificationLossMatchesHandComputedCrossEntropy() {
        Torch.manualSeed(5);
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            DistilBertForSequenceClassification m = new DistilBertForSequenceClassification(nd, small().numLabels(3).build());
            m.eval();
            NDArray ids = nd.create(new long[] {1, 4, 6, 8, 2, 3, 5, 7}, new Shape(2, 4));
            ModelOutput out = m.forward(ModelInput.builder().inputIds(ids).labels(nd.create(new long[] {0, 2})).build());
            float[] z = out.logits().toFloatArray();
            double expected = (lse(z, 0) - z[0] + lse(z, 3) - z[5]) / 2;
            assertThat((double) out.loss().getFloat()).isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-5));
        }
    }

    private static double lse(float[] z, int from) {
        double s = 0;
        for (int i = from; i < from + 3; i++) {
            s += Math.exp(z[i]);
        }
        return Math.log(s);
    }
}
