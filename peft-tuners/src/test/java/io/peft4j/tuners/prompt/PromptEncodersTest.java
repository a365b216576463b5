package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptEncoderReparameterizationType;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.PromptTuningInit;
import io.peft4j.config.TaskType;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.model.ModelConfig;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PromptEncodersTest {
    static NDManager nd;

    @BeforeAll
    static void init() {
        Torch.manualSeed(11);
        nd = Torch.newManager();
    }

    @AfterAll
    static void close() {
        nd.close();
    }

    static ModelConfig modelConfig(String json) throws Exception {
        return new ModelConfig((ObjectNode) new ObjectMapper().readTree(json), "config.json");
    }

    static final String LLAMA = "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":3,"
            + "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":50}";
    static final String GPT2 = "{\"model_type\":\"gpt2\",\"n_embd\":48,\"n_layer\":2,\"n_head\":6,\"vocab_size\":50}";

    @Test
    void configDimensionsComeFromTheModelConfigAsPeftDoes() throws Exception {
        PromptTuningConfig prompt = PromptLearning.prepareConfig(
                PromptTuningConfig.builder().numVirtualTokens(5).taskType(TaskType.CAUSAL_LM).build(), modelConfig(LLAMA));
        assertThat(List.of(prompt.tokenDim(), prompt.numLayers(), prompt.numAttentionHeads(),
                prompt.numTransformerSubmodules())).containsExactly(64, 3, 4, 1);
        // Prefix tuning with grouped-query attention: key/value heads and their width (64 / 4 * 2).
        PrefixTuningConfig prefix = PromptLearning.prepareConfig(
                PrefixTuningConfig.builder().numVirtualTokens(5).taskType(TaskType.CAUSAL_LM).build(), modelConfig(LLAMA));
        assertThat(List.of(prefix.tokenDim(), prefix.numAttentionHeads(), prefix.encoderHiddenSize())).containsExactly(32, 2, 32);
        PromptEncoderConfig ptuning = PromptLearning.prepareConfig(PromptEncoderConfig.builder().numVirtualTokens(5)
                .taskType(TaskType.SEQ_2_SEQ_LM).build(), modelConfig(GPT2));
        assertThat(List.of(ptuning.tokenDim(), ptuning.numLayers(), ptuning.numAttentionHeads(),
                ptuning.encoderHiddenSize(), ptuning.numTransformerSubmodules())).containsExactly(48, 2, 6, 48, 2);
        // Explicit values are kept.
        PromptEncoderConfig explicit = PromptLearning.prepareConfig(PromptEncoderConfig.builder().numVirtualTokens(5)
                .tokenDim(48).encoderHiddenSize(7).numLayers(9).build(), modelConfig(GPT2));
        assertThat(List.of(explicit.encoderHiddenSize(), explicit.numLayers())).containsExactly(7, 9);
    }

    @Test
    void missingDimensionsAndVirtualTokensFailClearly() throws Exception {
        assertThatThrownBy(() -> PromptLearning.prepareConfig(PromptTuningConfig.builder().numVirtualTokens(4).build(),
                modelConfig("{\"hidden_size\":8,\"num_attention_heads\":2}")))
                .hasMessageContaining("num_layers").hasMessageContaining("n_layer");
        assertThatThrownBy(() -> PromptLearning.prepareConfig(PromptTuningConfig.builder().build(), modelConfig(GPT2)))
                .hasMessageContaining("num_virtual_tokens must be set");
        assertThatThrownBy(() -> PromptTuningConfig.builder().numVirtualTokens(0).build())
                .hasMessageContaining("num_virtual_tokens").hasMessageContaining("must be > 0");
    }

    @Test
    void adaptersThatDoNotFitTheModelAreRejected() throws Exception {
        Embedding words = new Embedding(nd, 50, 64);
        PromptTuningConfig wide = PromptLearning.prepareConfig(
                PromptTuningConfig.builder().numVirtualTokens(3).tokenDim(32).build(), modelConfig(LLAMA));
        assertThatThrownBy(() -> PromptLearning.checkFitsModel(wide, modelConfig(LLAMA), words))
                .hasMessageContaining("token_dim is 32").hasMessageContaining("embeddings have size 64");
        PrefixTuningConfig layers = PromptLearning.prepareConfig(
                PrefixTuningConfig.builder().numVirtualTokens(3).numLayers(2).build(), modelConfig(LLAMA));
        assertThatThrownBy(() -> PromptLearning.checkFitsModel(layers, modelConfig(LLAMA), words))
                .hasMessageContaining("num_layers=2").hasMessageContaining("3 layers");
        PrefixTuningConfig heads = PrefixTuningConfig.builder().numVirtualTokens(3).numLayers(3).tokenDim(64)
                .numAttentionHeads(4).numTransformerSubmodules(1).build();
        assertThatThrownBy(() -> PromptLearning.checkFitsModel(heads, modelConfig(LLAMA), words))
                .hasMessageContaining("2 heads x 16");
        PromptLearning.checkFitsModel(PromptLearning.prepareConfig(
                PrefixTuningConfig.builder().numVirtualTokens(3).build(), modelConfig(LLAMA)), modelConfig(LLAMA), words);
    }

    @Test
    void encodersHavePeftsModulesAndShapes() throws Exception {
        ModelConfig mc = modelConfig(GPT2);
        PromptEncoder mlp = new PromptEncoder(nd, PromptLearning.prepareConfig(
                PromptEncoderConfig.builder().numVirtualTokens(4).encoderHiddenSize(10).build(), mc));
        assertThat(names(mlp.namedParameters())).containsExactly("embedding.weight", "mlp_head.0.weight",
                "mlp_head.0.bias", "mlp_head.2.weight", "mlp_head.2.bias", "mlp_head.4.weight", "mlp_head.4.bias");
        assertThat(mlp.namedParameters().get("mlp_head.2.weight").shape()).isEqualTo(new Shape(10, 10));
        PromptEncoder lstm = new PromptEncoder(nd, PromptLearning.prepareConfig(PromptEncoderConfig.builder()
                .numVirtualTokens(4).encoderHiddenSize(10).encoderNumLayers(1)
                .encoderReparameterizationType(PromptEncoderReparameterizationType.LSTM).build(), mc));
        assertThat(names(lstm.namedParameters())).contains("lstm_head.weight_ih_l0", "lstm_head.weight_hh_l0_reverse",
                "mlp_head.0.weight", "mlp_head.2.bias");
        assertThat(lstm.namedParameters().get("mlp_head.0.weight").shape()).isEqualTo(new Shape(20, 20));
        PrefixEncoder proj = new PrefixEncoder(nd, PromptLearning.prepareConfig(PrefixTuningConfig.builder()
                .numVirtualTokens(4).encoderHiddenSize(10).prefixProjection(true).build(), mc));
        assertThat(names(proj.namedParameters())).containsExactly("embedding.weight", "transform.0.weight",
                "transform.0.bias", "transform.2.weight", "transform.2.bias");
        assertThat(proj.outputDim()).isEqualTo(2 * 2 * 48);
        PrefixEncoder forInference = new PrefixEncoder(nd, PromptLearning.prepareConfig(PrefixTuningConfig.builder()
                .numVirtualTokens(4).prefixProjection(true).inferenceMode(true).build(), mc));
        assertThat(names(forInference.namedParameters())).containsExactly("embedding.weight");
        assertThat(forInference.embedding().weight().shape()).isEqualTo(new Shape(4, 192));
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            NDArray ids = nd.arange(0, 4).toType(DataType.INT64, false);
            assertThat(mlp.encode(ids).getShape()).isEqualTo(new Shape(4, 48));
            assertThat(lstm.encode(ids.expandDims(0)).getShape()).isEqualTo(new Shape(1, 4, 48));
            assertThat(lstm.encode(ids).getShape()).isEqualTo(new Shape(4, 48));
            assertThat(proj.encode(ids).getShape()).isEqualTo(new Shape(4, 192));
            // The projection is tanh-then-linear of the embedding rows.
            NDArray emb = proj.embedding().weight().data();
            NDArray manual = proj.child("transform").child("2").forward(proj.child("transform").child("0").forward(emb).tanh());
            assertThat(proj.encode(ids).toFloatArray()).isEqualTo(manual.toFloatArray());
        }
    }

    @Test
    void sampleVocabAndTextCopyWordEmbeddingRows() throws Exception {
        Embedding words = new Embedding(nd, 50, 48);
        float[] table = words.weight().data().toFloatArray();
        PromptTuningConfig sample = PromptLearning.prepareConfig(PromptTuningConfig.builder().numVirtualTokens(6)
                .promptTuningInit(PromptTuningInit.SAMPLE_VOCAB).build(), modelConfig(GPT2));
        PromptEmbedding s = new PromptEmbedding(nd, sample, words, null, new Random(5));
        float[] rows = s.embedding().weight().data().toFloatArray();
        Random r = new Random(5);
        for (int i = 0; i < 6; i++) {
            int id = (int) (r.nextDouble() * 50);
            for (int c = 0; c < 48; c++) {
                assertThat(rows[i * 48 + c]).isEqualTo(table[id * 48 + c]);
            }
        }
        PromptTuningConfig text = PromptLearning.prepareConfig(PromptTuningConfig.builder().numVirtualTokens(5)
                .promptTuningInit(PromptTuningInit.TEXT).promptTuningInitText("hi there")
                .tokenizerNameOrPath("unused").build(), modelConfig(GPT2));
        // Two tokens repeated to five virtual tokens: 7, 3, 7, 3, 7.
        PromptEmbedding t = new PromptEmbedding(nd, text, words, str -> new long[] {7, 3}, null);
        float[] trows = t.embedding().weight().data().toFloatArray();
        long[] expect = {7, 3, 7, 3, 7};
        for (int i = 0; i < 5; i++) {
            for (int c = 0; c < 48; c++) {
                assertThat(trows[i * 48 + c]).isEqualTo(table[(int) expect[i] * 48 + c]);
            }
        }
        assertThat(PromptEmbedding.fitToLength(new long[] {1, 2, 3, 4}, 3)).containsExactly(1, 2, 3);
        assertThat(t.embedding().weight().requiresGrad()).isTrue();
        assertThat(words.weight().data().toFloatArray()).isEqualTo(table);
    }

    @Test
    void textInitWithoutATokenizerFailsClearly() throws Exception {
        Embedding words = new Embedding(nd, 50, 48);
        PromptTuningConfig text = PromptLearning.prepareConfig(PromptTuningConfig.builder().numVirtualTokens(5)
                .promptTuningInit(PromptTuningInit.TEXT).promptTuningInitText("hi")
                .tokenizerNameOrPath("/no/such/tokenizer").build(), modelConfig(GPT2));
        // peft-tuners has no tokenizer loader on its class path.
        assertThatThrownBy(() -> new PromptEmbedding(nd, text, words, null, null))
                .hasMessageContaining("prompt_tuning_init is TEXT").hasMessageContaining("PromptTokenizer");
        assertThatThrownBy(() -> PromptTuningConfig.builder().numVirtualTokens(5)
                .promptTuningInit(PromptTuningInit.TEXT).promptTuningInitText("hi").build())
                .hasMessageContaining("tokenizer_name_or_path");
        assertThatThrownBy(() -> new PromptEmbedding(nd, text, words, str -> new long[] {99}, null))
                .hasMessageContaining("token id 99").hasMessageContaining("vocabulary of 50");
    }

    /** peft's view/permute/split on a tensor whose values encode their own indices. */
    @Test
    void prefixLayoutIsPeftsPermutation() throws Exception {
        int layers = 2;
        int heads = 2;
        int hd = 3;
        int p = 4;
        int b = 2;
        PrefixTuningConfig cfg = PrefixTuningConfig.builder().numVirtualTokens(p).numLayers(layers).tokenDim(heads * hd)
                .numAttentionHeads(heads).numTransformerSubmodules(1).build();
        int width = layers * 2 * heads * hd;
        float[] v = new float[b * p * width];
        for (int i = 0; i < v.length; i++) {
            v[i] = i;
        }
        List<NDArray[]> kv = PromptLearning.pastKeyValues(nd.create(v, new Shape(b, p, width)), cfg);
        assertThat(kv).hasSize(layers);
        for (int l = 0; l < layers; l++) {
            for (int which = 0; which < 2; which++) {
                NDArray t = kv.get(l)[which];
                assertThat(t.getShape()).isEqualTo(new Shape(b, heads, p, hd));
                float[] got = t.toFloatArray();
                int n = 0;
                for (int bb = 0; bb < b; bb++) {
                    for (int h = 0; h < heads; h++) {
                        for (int tok = 0; tok < p; tok++) {
                            for (int d = 0; d < hd; d++) {
                                // input index [bb, tok, (2l + which), h, d] of the [b, p, layers*2, heads, hd] view
                                int src = (((bb * p + tok) * layers * 2 + (2 * l + which)) * heads + h) * hd + d;
                                assertThat(got[n++]).isEqualTo((float) src);
                            }
                        }
                    }
                }
            }
        }
    }

    private static List<String> names(Map<String, Param> m) {
        return List.copyOf(m.keySet());
    }
}
