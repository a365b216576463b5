package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.ModelInput;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static io.peft4j.transformers.llama.LlamaTestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class LlamaConfigTest {
    private static LlamaConfig.Builder small() {
        return LlamaConfig.builder().vocabSize(30).hiddenSize(16).intermediateSize(24).numHiddenLayers(1)
                .numAttentionHeads(2);
    }

    @Test
    void readsTheReferenceConfig() throws Exception {
        LlamaConfig c = LlamaConfig.of(ModelConfig.read(modelDir().resolve("config.json")));
        assertThat(c.modelType()).isEqualTo("llama");
        assertThat(c.vocabSize()).isEqualTo(256);
        assertThat(c.hiddenSize()).isEqualTo(64);
        assertThat(c.numAttentionHeads()).isEqualTo(4);
        assertThat(c.numKeyValueHeads()).isEqualTo(2);
        assertThat(c.headDim()).isEqualTo(16);
        assertThat(c.rmsNormEps()).isEqualTo(1e-6);
        assertThat(c.ropeTheta()).isEqualTo(10000.0);
        assertThat(c.tieWordEmbeddings()).isFalse();
        assertThat(c.llama3RopeScaling()).isNull();
    }

    @Test
    void builderDefaultsKvHeadsAndHeadDim() {
        LlamaConfig c = LlamaConfig.builder().hiddenSize(512).numHiddenLayers(4).numAttentionHeads(8)
                .intermediateSize(1376).vocabSize(8000).build();
        assertThat(c.numKeyValueHeads()).isEqualTo(8);
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.modelConfig().modelType()).isEqualTo("llama");
    }

    @Test
    void rejectsOtherActivations() {
        assertThatThrownBy(() -> small().set("hidden_act", "gelu").build())
                .hasMessageContaining("hidden_act").hasMessageContaining("gelu");
    }

    @Test
    void rejectsUnsupportedRopeScalingByValue() {
        assertThatThrownBy(() -> small().set("rope_scaling", Map.of("type", "linear", "factor", 2.0)).build())
                .hasMessageContaining("rope_scaling").hasMessageContaining("linear").hasMessageContaining("not supported yet");
    }

    /** transformers 5 writes rope_theta and the scaling together as rope_parameters (and no rope_theta key). */
    @Test
    void readsTransformers5RopeParameters() throws Exception {
        String json = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4, "
                + "\"num_hidden_layers\": 2, \"intermediate_size\": 128, \"vocab_size\": 256, \"rope_parameters\": "
                + "{\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                + "\"original_max_position_embeddings\": 8, \"rope_theta\": 500000.0, \"rope_type\": \"llama3\"}}";
        var node = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(json);
        LlamaConfig c = LlamaConfig.of(new io.peft4j.nn.model.ModelConfig(node, "config.json"));
        assertThat(c.ropeTheta()).isEqualTo(500000.0);
        assertThat(c.llama3RopeScaling()).isNotNull();
        assertThat(c.llama3RopeScaling().factor()).isEqualTo(8.0);
        assertThat(c.llama3RopeScaling().originalMaxPositionEmbeddings()).isEqualTo(8);

        node.set("rope_parameters", new com.fasterxml.jackson.databind.ObjectMapper().readTree(
                "{\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}"));
        LlamaConfig d = LlamaConfig.of(new io.peft4j.nn.model.ModelConfig(node, "config.json"));
        assertThat(d.ropeTheta()).isEqualTo(1000000.0);
        assertThat(d.llama3RopeScaling()).isNull();
        node.put("rope_theta", 10000.0); // an explicit rope_theta wins, as in transformers 4
        assertThat(LlamaConfig.of(new io.peft4j.nn.model.ModelConfig(node, "config.json")).ropeTheta()).isEqualTo(10000.0);
    }

    @Test
    void rejectsOtherModelTypes() {
        assertThatThrownBy(() -> small().modelType("gpt2").build()).hasMessageContaining("gpt2");
    }

    @Test
    void llama3RopeScalingMatchesTransformersFormula() {
        LlamaConfig c = small().set("rope_scaling", Map.of("rope_type", "llama3", "factor", 8.0,
                "low_freq_factor", 1.0, "high_freq_factor", 4.0, "original_max_position_embeddings", 8192)).build();
        assertThat(c.llama3RopeScaling().factor()).isEqualTo(8.0);
        // High frequencies are kept, low ones divided by the factor, the middle band interpolated.
        float[] in = {1f, 1e-4f, (float) (2 * Math.PI / 4096)};
        float[] out = LlamaForCausalLM.LlamaRotaryEmbedding.llama3InvFreq(in, c.llama3RopeScaling());
        assertThat(out[0]).isEqualTo(1f);
        assertThat(out[1]).isEqualTo(1e-4f / 8f);
        double smooth = (8192.0 / 4096 - 1) / (4 - 1);
        assertThat((double) out[2]).isCloseTo((1 - smooth) * in[2] / 8 + smooth * in[2],
                org.assertj.core.data.Offset.offset(1e-9));
    }

    @Test
    void qwen2HasQkvBiasButNoOutputBias() {
        try (NDManager nd = Torch.newManager()) {
            LlamaForCausalLM m = new LlamaForCausalLM(nd, small().modelType("qwen2").build());
            assertThat(m.namedParameters()).containsKeys("model.layers.0.self_attn.q_proj.bias",
                    "model.layers.0.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.bias")
                    .doesNotContainKey("model.layers.0.self_attn.o_proj.bias")
                    .doesNotContainKey("model.layers.0.mlp.up_proj.bias");
        }
    }

    @Test
    void attentionAndMlpBiasFlags() {
        try (NDManager nd = Torch.newManager()) {
            LlamaForCausalLM m = new LlamaForCausalLM(nd, small().attentionBias(true).mlpBias(true).build());
            assertThat(m.namedParameters()).containsKeys("model.layers.0.self_attn.o_proj.bias",
                    "model.layers.0.self_attn.q_proj.bias", "model.layers.0.mlp.down_proj.bias");
        }
    }

    @Test
    void mistralSlidingWindowIsEnforcedOnlyBeyondTheWindow() {
        LlamaConfig c = small().modelType("mistral").set("sliding_window", 4).build();
        assertThat(c.slidingWindow()).isEqualTo(4);
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            LlamaForCausalLM m = new LlamaForCausalLM(nd, c);
            assertThat(m.forward(ModelInput.of(nd.create(new long[] {1, 2, 3, 4}, new Shape(1, 4)))).logits()
                    .getShape()).isEqualTo(new Shape(1, 4, 30));
            assertThatThrownBy(() -> m.forward(ModelInput.of(nd.create(new long[] {1, 2, 3, 4, 5}, new Shape(1, 5)))))
                    .hasMessageContaining("sliding_window");
        }
    }
}
