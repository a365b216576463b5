package io.peft4j.transformers.bert;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.transformers.ClassifierHead;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static io.peft4j.transformers.bert.BertTestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BertConfigTest {
    @TempDir
    Path tmp;

    private static BertConfig.Builder small() {
        return BertConfig.builder().vocabSize(30).hiddenSize(16).numHiddenLayers(1).numAttentionHeads(2)
                .intermediateSize(24);
    }

    @Test
    void readsTheReferenceConfig() throws Exception {
        BertConfig c = BertConfig.of(ModelConfig.read(modelDir().resolve("config.json")));
        assertThat(c.vocabSize()).isEqualTo(256);
        assertThat(c.hiddenSize()).isEqualTo(64);
        assertThat(c.numHiddenLayers()).isEqualTo(2);
        assertThat(c.numAttentionHeads()).isEqualTo(4);
        assertThat(c.headDim()).isEqualTo(16);
        assertThat(c.intermediateSize()).isEqualTo(128);
        assertThat(c.hiddenAct()).isEqualTo(BertConfig.Activation.GELU);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(64);
        assertThat(c.typeVocabSize()).isEqualTo(2);
        assertThat(c.layerNormEps()).isEqualTo(1e-12);
        assertThat(c.padTokenId()).isZero();
        assertThat(c.classifierDropout()).isNull();
        assertThat(c.effectiveClassifierDropout()).isEqualTo(0.1);
        assertThat(c.numLabels()).isEqualTo(2);
        assertThat(c.problemType()).isNull();
    }

    @Test
    void missingRequiredFieldNamesFileAndKey() throws Exception {
        ObjectNode json = (ObjectNode) new ObjectMapper().readTree(modelDir().resolve("config.json").toFile());
        json.remove("intermediate_size");
        Path file = tmp.resolve("config.json");
        Files.writeString(file, json.toString());
        assertThatThrownBy(() -> BertConfig.of(ModelConfig.read(file)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("'intermediate_size'");
    }

    @Test
    void activations() {
        assertThat(small().hiddenAct("gelu_new").build().hiddenAct()).isEqualTo(BertConfig.Activation.GELU_NEW);
        assertThat(small().hiddenAct("relu").build().hiddenAct()).isEqualTo(BertConfig.Activation.RELU);
        assertThatThrownBy(() -> small().hiddenAct("swish").build())
                .hasMessageContaining("<BertConfig.builder>").hasMessageContaining("hidden_act 'swish'")
                .hasMessageContaining("not supported");
    }

    @Test
    void rejectsUnsupportedArchitectureSettings() {
        assertThatThrownBy(() -> small().set("position_embedding_type", "relative_key").build())
                .hasMessageContaining("position_embedding_type 'relative_key'").hasMessageContaining("absolute");
        assertThatThrownBy(() -> small().set("is_decoder", true).build()).hasMessageContaining("is_decoder");
        assertThatThrownBy(() -> small().numAttentionHeads(3).build())
                .hasMessageContaining("hidden_size (16) is not a multiple of num_attention_heads (3)");
        assertThatThrownBy(() -> small().set("model_type", "roberta").build())
                .hasMessageContaining("model_type 'roberta' is not a BERT model");
        assertThatThrownBy(() -> small().problemType("ranking").build()).hasMessageContaining("problem_type 'ranking'");
    }

    @Test
    void numLabelsFollowsTransformers() {
        assertThat(small().build().numLabels()).isEqualTo(2);
        assertThat(small().set("num_labels", 5).build().numLabels()).isEqualTo(5);
        // A saved config carries id2label, which wins over a stray num_labels.
        assertThat(small().set("id2label", Map.of("0", "neg", "1", "neu", "2", "pos")).set("num_labels", 7).build()
                .numLabels()).isEqualTo(3);
        BertConfig four = small().numLabels(4).build();
        assertThat(four.numLabels()).isEqualTo(4);
        assertThat(four.modelConfig().json().get("id2label").get("3").asText()).isEqualTo("LABEL_3");
        assertThat(small().problemType("regression").build().problemType())
                .isEqualTo(ClassifierHead.ProblemType.REGRESSION);
        assertThat(small().classifierDropout(0.3).build().effectiveClassifierDropout()).isEqualTo(0.3);
    }
}
