package io.peft4j.transformers.llama;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.model.ModelConfig;

import java.util.Set;

/**
 * Typed view of a LLaMA-family {@code config.json} ({@code model_type} llama, mistral or qwen2), with
 * transformers' defaults for absent keys. Settings the model cannot honour fail here, by name, rather than
 * giving wrong numbers later.
 */
public final class LlamaConfig {
    /** The {@code model_type} values this architecture implements. */
    public static final Set<String> MODEL_TYPES = Set.of("llama", "mistral", "qwen2");

    private final ModelConfig source;
    private final String modelType;
    private final int vocabSize;
    private final int hiddenSize;
    private final int intermediateSize;
    private final int numHiddenLayers;
    private final int numAttentionHeads;
    private final int numKeyValueHeads;
    private final int headDim;
    private final double rmsNormEps;
    private final double ropeTheta;
    private final int maxPositionEmbeddings;
    private final boolean qkvBias;
    private final boolean outputProjBias;
    private final boolean mlpBias;
    private final boolean tieWordEmbeddings;
    private final double initializerRange;
    private final Integer slidingWindow;
    private final Llama3RopeScaling llama3RopeScaling;

    /** {@code rope_scaling} with {@code rope_type = "llama3"} (LLaMA 3.1+). */
    public record Llama3RopeScaling(double factor, double lowFreqFactor, double highFreqFactor,
                                    int originalMaxPositionEmbeddings) {}

    /** Reads and validates {@code config}; fails with the offending key for unsupported settings. */
    public static LlamaConfig of(ModelConfig config) {
        return new LlamaConfig(config);
    }

    private LlamaConfig(ModelConfig c) {
        this.source = c;
        String type = c.modelType() == null ? "llama" : c.modelType();
        if (!MODEL_TYPES.contains(type)) {
            throw new IllegalArgumentException(c.source() + ": model_type '" + type
                    + "' is not a LLaMA-family model (supported: " + MODEL_TYPES + ")");
        }
        this.modelType = type;
        boolean qwen2 = type.equals("qwen2");
        boolean mistral = type.equals("mistral");
        // transformers' per-class defaults, used only when config.json omits a key.
        this.vocabSize = c.getInt("vocab_size", qwen2 ? 151936 : 32000);
        this.hiddenSize = c.getInt("hidden_size", 4096);
        this.intermediateSize = c.getInt("intermediate_size", qwen2 ? 22016 : mistral ? 14336 : 11008);
        this.numHiddenLayers = c.getInt("num_hidden_layers", 32);
        this.numAttentionHeads = c.getInt("num_attention_heads", 32);
        this.numKeyValueHeads = c.getInt("num_key_value_heads", mistral ? 8 : numAttentionHeads);
        this.headDim = c.getInt("head_dim", hiddenSize / numAttentionHeads);
        this.rmsNormEps = c.getDouble("rms_norm_eps", 1e-6);
        // transformers 5 writes rope_theta and the scaling together as rope_parameters.
        JsonNode rp = c.json().get("rope_parameters");
        this.ropeTheta = c.has("rope_theta") ? c.getDouble("rope_theta")
                : rp != null && rp.hasNonNull("rope_theta") ? rp.get("rope_theta").asDouble() : 10000.0;
        this.maxPositionEmbeddings = c.getInt("max_position_embeddings", mistral ? 4096 * 32 : qwen2 ? 32768 : 2048);
        boolean attentionBias = c.getBoolean("attention_bias", false);
        // Qwen2 hard-codes bias on q/k/v (not o) regardless of config.
        this.qkvBias = qwen2 || attentionBias;
        this.outputProjBias = !qwen2 && attentionBias;
        this.mlpBias = c.getBoolean("mlp_bias", false);
        this.tieWordEmbeddings = c.getBoolean("tie_word_embeddings", false);
        this.initializerRange = c.getDouble("initializer_range", 0.02);

        String act = c.getString("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw new IllegalArgumentException(c.source() + ": hidden_act '" + act
                    + "' is not supported (LLaMA-family models use 'silu')");
        }
        if (numAttentionHeads <= 0 || numKeyValueHeads <= 0 || numAttentionHeads % numKeyValueHeads != 0) {
            throw new IllegalArgumentException(c.source() + ": num_attention_heads (" + numAttentionHeads
                    + ") must be a positive multiple of num_key_value_heads (" + numKeyValueHeads + ")");
        }
        if (headDim <= 0 || headDim % 2 != 0) {
            throw new IllegalArgumentException(c.source() + ": head_dim must be positive and even for RoPE, got "
                    + headDim);
        }
        if (qwen2) {
            this.slidingWindow = c.getBoolean("use_sliding_window", false) && c.has("sliding_window")
                    ? c.getInt("sliding_window") : null;
        } else {
            this.slidingWindow = c.has("sliding_window") ? c.getInt("sliding_window") : null;
        }
        this.llama3RopeScaling = parseRopeScaling(c);
    }

    private static Llama3RopeScaling parseRopeScaling(ModelConfig c) {
        JsonNode rs = c.json().get("rope_scaling");
        if ((rs == null || rs.isNull()) && c.json().path("rope_parameters").isObject()) {
            rs = c.json().get("rope_parameters");
        }
        if (rs == null || rs.isNull()) {
            return null;
        }
        String ropeType = rs.hasNonNull("rope_type") ? rs.get("rope_type").asText()
                : rs.hasNonNull("type") ? rs.get("type").asText() : "";
        if (ropeType.equals("default")) {
            return null;
        }
        if (ropeType.equals("llama3")) {
            for (String k : new String[] {"factor", "low_freq_factor", "high_freq_factor",
                    "original_max_position_embeddings"}) {
                if (!rs.hasNonNull(k)) {
                    throw new IllegalArgumentException(c.source() + ": rope_scaling of type llama3 needs '" + k
                            + "': " + rs);
                }
            }
            return new Llama3RopeScaling(rs.get("factor").asDouble(), rs.get("low_freq_factor").asDouble(),
                    rs.get("high_freq_factor").asDouble(), rs.get("original_max_position_embeddings").asInt());
        }
        throw new IllegalArgumentException(c.source() + ": rope_scaling / rope_parameters " + rs
                + " is not supported yet (only null, 'default' and 'llama3')");
    }

    /** The underlying {@code config.json}. */
    public ModelConfig modelConfig() {
        return source;
    }

    public String modelType() {
        return modelType;
    }

    public int vocabSize() {
        return vocabSize;
    }

    public int hiddenSize() {
        return hiddenSize;
    }

    public int intermediateSize() {
        return intermediateSize;
    }

    public int numHiddenLayers() {
        return numHiddenLayers;
    }

    public int numAttentionHeads() {
        return numAttentionHeads;
    }

    public int numKeyValueHeads() {
        return numKeyValueHeads;
    }

    public int headDim() {
        return headDim;
    }

    public double rmsNormEps() {
        return rmsNormEps;
    }

    public double ropeTheta() {
        return ropeTheta;
    }

    public int maxPositionEmbeddings() {
        return maxPositionEmbeddings;
    }

    /** Bias on q/k/v projections ({@code attention_bias}, or always for qwen2). */
    public boolean qkvBias() {
        return qkvBias;
    }

    /** Bias on {@code o_proj} ({@code attention_bias}; never for qwen2). */
    public boolean outputProjBias() {
        return outputProjBias;
    }

    public boolean mlpBias() {
        return mlpBias;
    }

    public boolean tieWordEmbeddings() {
        return tieWordEmbeddings;
    }

    public double initializerRange() {
        return initializerRange;
    }

    /** Mistral/Qwen2 sliding attention window, or null when attention is global. */
    public Integer slidingWindow() {
        return slidingWindow;
    }

    /** LLaMA-3 RoPE frequency scaling, or null for plain RoPE. */
    public Llama3RopeScaling llama3RopeScaling() {
        return llama3RopeScaling;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@code config.json} in code, e.g. for tests and benchmarks; unset keys take LLaMA defaults. */
    public static final class Builder {
        private static final ObjectMapper JSON = new ObjectMapper();
        private final ObjectNode json = JSON.createObjectNode();

        private Builder() {
            json.putArray("architectures").add("LlamaForCausalLM");
            json.put("model_type", "llama");
            json.put("hidden_act", "silu");
            json.put("vocab_size", 32000);
            json.put("hidden_size", 4096);
            json.put("intermediate_size", 11008);
            json.put("num_hidden_layers", 32);
            json.put("num_attention_heads", 32);
            json.put("max_position_embeddings", 2048);
            json.put("rms_norm_eps", 1e-6);
            json.put("rope_theta", 10000.0);
            json.putNull("rope_scaling");
            json.put("attention_bias", false);
            json.put("mlp_bias", false);
            json.put("tie_word_embeddings", false);
            json.put("initializer_range", 0.02);
            json.put("torch_dtype", "float32");
        }

        public Builder modelType(String v) {
            json.put("model_type", v);
            return this;
        }

        public Builder vocabSize(int v) {
            json.put("vocab_size", v);
            return this;
        }

        public Builder hiddenSize(int v) {
            json.put("hidden_size", v);
            return this;
        }

        public Builder intermediateSize(int v) {
            json.put("intermediate_size", v);
            return this;
        }

        public Builder numHiddenLayers(int v) {
            json.put("num_hidden_layers", v);
            return this;
        }

        public Builder numAttentionHeads(int v) {
            json.put("num_attention_heads", v);
            return this;
        }

        public Builder numKeyValueHeads(int v) {
            json.put("num_key_value_heads", v);
            return this;
        }

        public Builder headDim(int v) {
            json.put("head_dim", v);
            return this;
        }

        public Builder rmsNormEps(double v) {
            json.put("rms_norm_eps", v);
            return this;
        }

        public Builder ropeTheta(double v) {
            json.put("rope_theta", v);
            return this;
        }

        public Builder maxPositionEmbeddings(int v) {
            json.put("max_position_embeddings", v);
            return this;
        }

        public Builder attentionBias(boolean v) {
            json.put("attention_bias", v);
            return this;
        }

        public Builder mlpBias(boolean v) {
            json.put("mlp_bias", v);
            return this;
        }

        public Builder tieWordEmbeddings(boolean v) {
            json.put("tie_word_embeddings", v);
            return this;
        }

        public Builder initializerRange(double v) {
            json.put("initializer_range", v);
            return this;
        }

        /** Sets any other key, e.g. {@code rope_scaling}; {@code value} is converted with Jackson. */
        public Builder set(String key, Object value) {
            json.set(key, JSON.valueToTree(value));
            return this;
        }

        public LlamaConfig build() {
            if (!json.has("num_key_value_heads")) {
                json.set("num_key_value_heads", json.get("num_attention_heads"));
            }
            if (!json.has("head_dim")) {
                json.put("head_dim", json.get("hidden_size").asInt() / json.get("num_attention_heads").asInt());
            }
            return new LlamaConfig(new ModelConfig(json, "<LlamaConfig.builder>"));
        }
    }
}
