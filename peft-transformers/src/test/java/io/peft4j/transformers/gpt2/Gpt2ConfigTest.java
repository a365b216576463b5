package io.peft4j.transformers.gpt2;

import io.peft4j.nn.model.ModelConfig;
import org.junit.jupiter.api.Test;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Gpt2ConfigTest {
    @Test
    void readsTheReferenceConfigWithTransformersDefaults() throws Exception {
        Gpt2Config c = Gpt2Config.fromJson(modelDir().resolve("config.json"));
        assertThat(c.vocabSize()).isEqualTo(256);
        assertThat(c.nPositions()).isEqualTo(64);
        assertThat(c.nEmbd()).isEqualTo(64);
        assertThat(c.nLayer()).isEqualTo(2);
        assertThat(c.nHead()).isEqualTo(4);
        assertThat(c.headDim()).isEqualTo(16);
        assertThat(c.nInner()).as("n_inner null -> 4 * n_embd").isEqualTo(256);
        assertThat(c.activationFunction()).isEqualTo("gelu_new");
        assertThat(c.layerNormEpsilon()).isEqualTo(1e-5);
        assertThat(c.scaleAttnWeights()).isTrue();
        assertThat(c.scaleAttnByInverseLayerIdx()).isFalse();
        assertThat(c.bosTokenId()).isEqualTo(1);
        assertThat(c.eosTokenId()).isEqualTo(2);
        assertThat(c.padTokenId()).isNull();
        assertThat(c.numLabels()).isEqualTo(2);
        assertThat(c.tieWordEmbeddings()).isTrue();
    }

    @Test
    void numLabelsComesFromId2LabelThenNumLabels() {
        assertThat(Gpt2Config.builder().numLabels(5).build().numLabels()).isEqualTo(5);
        assertThat(Gpt2Config.builder().set("num_labels", 4).build().numLabels()).isEqualTo(4);
        // transformers: id2label wins over a conflicting num_labels.
        assertThat(Gpt2Config.builder().numLabels(3).set("num_labels", 7).build().numLabels()).isEqualTo(3);
    }

    @Test
    void transformersAttributeAliasesAreAccepted() {
        var json = Gpt2Config.builder().build().modelConfig().json();
        json.remove("n_embd");
        json.put("hidden_size", 32);
        json.remove("n_head");
        json.put("num_attention_heads", 4);
        Gpt2Config c = Gpt2Config.of(new ModelConfig(json, "aliases.json"));
        assertThat(c.nEmbd()).isEqualTo(32);
        assertThat(c.nHead()).isEqualTo(4);
        assertThat(c.nInner()).isEqualTo(128);
    }

    @Test
    void unsupportedSettingsFailByFileAndKey() {
        assertThatThrownBy(() -> Gpt2Config.builder().activationFunction("swish").build())
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("<Gpt2Config.builder>")
                .hasMessageContaining("activation_function 'swish'");
        assertThatThrownBy(() -> Gpt2Config.builder().set("reorder_and_upcast_attn", true).build())
                .hasMessageContaining("reorder_and_upcast_attn");
        assertThatThrownBy(() -> Gpt2Config.builder().nEmbd(30).nHead(4).build())
                .hasMessageContaining("n_embd (30) must be divisible by n_head (4)");
        assertThatThrownBy(() -> Gpt2Config.builder().set("model_type", "llama").build())
                .hasMessageContaining("model_type 'llama'");
        var json = Gpt2Config.builder().build().modelConfig().json();
        json.remove("vocab_size");
        assertThatThrownBy(() -> Gpt2Config.of(new ModelConfig(json, "/some/config.json")))
                .hasMessageContaining("/some/config.json").hasMessageContaining("'vocab_size'");
    }

    @Test
    void everySupportedActivationBuilds() {
        for (String act : Gpt2Config.ACTIVATIONS) {
            assertThat(Gpt2Config.builder().activationFunction(act).build().activationFunction()).isEqualTo(act);
        }
    }
}
