package io.peft4j.transformers.gpt2;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.transformers.ClassifierHead;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Set;

/**
 * Typed, immutable view of a GPT-2 {@code config.json} ({@code model_type} gpt2), with transformers 4.45's
 * {@code GPT2Config} defaults for optional keys. The keys that fix the tensor shapes ({@code vocab_size},
 * {@code n_positions}, {@code n_embd}, {@code n_layer}, {@code n_head}) are required: guessing GPT-2 small's
 * sizes for a file that lacks them would only fail later, less clearly. transformers' aliases
 * ({@code hidden_size}, {@code max_position_embeddings}, {@code num_hidden_layers}, {@code num_attention_heads})
 * are accepted. Settings the model cannot honour fail here, naming the file and key.
 */
public final class Gpt2Config {
    /** The {@code activation_function} values the MLP implements. */
    public static final Set<String> ACTIVATIONS = Set.of("gelu_new", "gelu_pytorch_tanh", "gelu", "relu");

    private final ModelConfig source;
    private final int vocabSize;
    private final int nPositions;
    private final int nEmbd;
    private final int nLayer;
    private final int nHead;
    private final int nInner;
    private final String activationFunction;
    private final double layerNormEpsilon;
    private final double initializerRange;
    private final double embdPdrop;
    private final double attnPdrop;
    private final double residPdrop;
    private final boolean scaleAttnWeights;
    private final boolean scaleAttnByInverseLayerIdx;
    private final Integer bosTokenId;
    private final Integer eosTokenId;
    private final Integer padTokenId;
    private final int numLabels;
    private final ClassifierHead.ProblemType problemType;
    private final boolean tieWordEmbeddings;

    /** Reads and validates {@code config}; fails with the file and key for missing or unsupported settings. */
    public static Gpt2Config of(ModelConfig config) {
        return new Gpt2Config(config);
    }

    /** Reads a transformers {@code config.json}. */
    public static Gpt2Config fromJson(Path configJson) throws IOException {
        return of(ModelConfig.read(configJson));
    }

    private Gpt2Config(ModelConfig c) {
        this.source = c;
        String type = c.modelType();
        if (type != null && !type.equals("gpt2")) {
            throw new IllegalArgumentException(c.source() + ": model_type '" + type + "' is not 'gpt2'");
        }
        this.vocabSize = required(c, "vocab_size", null);
        this.nPositions = required(c, "n_positions", "max_position_embeddings");
        this.nEmbd = required(c, "n_embd", "hidden_size");
        this.nLayer = required(c, "n_layer", "num_hidden_layers");
        this.nHead = required(c, "n_head", "num_attention_heads");
        // n_inner: null means 4 * n_embd (GPT2Block).
        this.nInner = c.getInt("n_inner", 4 * nEmbd);
        this.activationFunction = c.getString("activation_function", "gelu_new");
        this.layerNormEpsilon = c.getDouble("layer_norm_epsilon", 1e-5);
        this.initializerRange = c.getDouble("initializer_range", 0.02);
        this.embdPdrop = c.getDouble("embd_pdrop", 0.1);
        this.attnPdrop = c.getDouble("attn_pdrop", 0.1);
        this.residPdrop = c.getDouble("resid_pdrop", 0.1);
        this.scaleAttnWeights = c.getBoolean("scale_attn_weights", true);
        this.scaleAttnByInverseLayerIdx = c.getBoolean("scale_attn_by_inverse_layer_idx", false);
        this.bosTokenId = c.has("bos_token_id") ? c.getInt("bos_token_id") : null;
        this.eosTokenId = c.has("eos_token_id") ? c.getInt("eos_token_id") : null;
        this.padTokenId = c.has("pad_token_id") ? c.getInt("pad_token_id") : null;
        this.tieWordEmbeddings = c.getBoolean("tie_word_embeddings", true);
        this.problemType = ClassifierHead.problemType(c);
        this.numLabels = ClassifierHead.numLabels(c);

        if (vocabSize <= 0 || nPositions <= 0 || nEmbd <= 0 || nLayer < 0 || nHead <= 0 || nInner <= 0) {
            throw new IllegalArgumentException(c.source() + ": sizes must be positive (vocab_size=" + vocabSize
                    + ", n_positions=" + nPositions + ", n_embd=" + nEmbd + ", n_layer=" + nLayer + ", n_head="
                    + nHead + ", n_inner=" + nInner + ")");
        }
        if (nEmbd % nHead != 0) {
            throw new IllegalArgumentException(c.source() + ": n_embd (" + nEmbd + ") must be divisible by n_head ("
                    + nHead + ")");
        }
        if (!ACTIVATIONS.contains(activationFunction)) {
            throw new IllegalArgumentException(c.source() + ": activation_function '" + activationFunction
                    + "' is not supported (supported: gelu_new, gelu_pytorch_tanh, gelu, relu)");
        }
        if (c.getBoolean("reorder_and_upcast_attn", false)) {
            throw new IllegalArgumentException(c.source()
                    + ": reorder_and_upcast_attn=true is not supported (only false)");
        }
        if (c.getBoolean("add_cross_attention", false)) {
            throw new IllegalArgumentException(c.source()
                    + ": add_cross_attention=true is not supported (GPT-2 as a decoder-only model only)");
        }
    }

    /** {@code key}, else transformers' attribute alias, else an error naming the file and the key. */
    private static int required(ModelConfig c, String key, String alias) {
        if (!c.has(key) && alias != null && c.has(alias)) {
            return c.getInt(alias);
        }
        return c.getInt(key);
    }

    /** The underlying {@code config.json}. */
    public ModelConfig modelConfig() {
        return source;
    }

    public int vocabSize() {
        return vocabSize;
    }

    /** Maximum sequence length: rows of {@code wpe}. */
    public int nPositions() {
        return nPositions;
    }

    /** Hidden size. */
    public int nEmbd() {
        return nEmbd;
    }

    public int nLayer() {
        return nLayer;
    }

    public int nHead() {
        return nHead;
    }

    public int headDim() {
        return nEmbd / nHead;
    }

    /** MLP width ({@code n_inner}, or 4 * n_embd when null). */
    public int nInner() {
        return nInner;
    }

    public String activationFunction() {
        return activationFunction;
    }

    public double layerNormEpsilon() {
        return layerNormEpsilon;
    }

    public double initializerRange() {
        return initializerRange;
    }

    public double embdPdrop() {
        return embdPdrop;
    }

    public double attnPdrop() {
        return attnPdrop;
    }

    public double residPdrop() {
        return residPdrop;
    }

    /** Divide attention scores by sqrt(head_dim). */
    public boolean scaleAttnWeights() {
        return scaleAttnWeights;
    }

    /** Also divide attention scores of layer i by (i + 1). */
    public boolean scaleAttnByInverseLayerIdx() {
        return scaleAttnByInverseLayerIdx;
    }

    public Integer bosTokenId() {
        return bosTokenId;
    }

    public Integer eosTokenId() {
        return eosTokenId;
    }

    /** The padding id sequence classification pools by; null when the config has none. */
    public Integer padTokenId() {
        return padTokenId;
    }

    /** Classifier outputs: the size of {@code id2label} if present, else {@code num_labels}, else 2. */
    public int numLabels() {
        return numLabels;
    }

    /** {@code problem_type} or null (then inferred from num_labels and the labels' dtype, as transformers does). */
    public ClassifierHead.ProblemType problemType() {
        return problemType;
    }

    public boolean tieWordEmbeddings() {
        return tieWordEmbeddings;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@code config.json} in code, e.g. for tests; unset keys take GPT-2 small's values. */
    public static final class Builder {
        private static final ObjectMapper JSON = new ObjectMapper();
        private final ObjectNode json = JSON.createObjectNode();

        private Builder() {
            json.putArray("architectures").add("GPT2LMHeadModel");
            json.put("model_type", "gpt2");
            json.put("vocab_size", 50257);
            json.put("n_positions", 1024);
            json.put("n_embd", 768);
            json.put("n_layer", 12);
            json.put("n_head", 12);
            json.putNull("n_inner");
            json.put("activation_function", "gelu_new");
            json.put("resid_pdrop", 0.1);
            json.put("embd_pdrop", 0.1);
            json.put("attn_pdrop", 0.1);
            json.put("layer_norm_epsilon", 1e-5);
            json.put("initializer_range", 0.02);
            json.put("scale_attn_weights", true);
            json.put("scale_attn_by_inverse_layer_idx", false);
            json.put("reorder_and_upcast_attn", false);
            json.put("bos_token_id", 50256);
            json.put("eos_token_id", 50256);
            json.put("tie_word_embeddings", true);
            json.put("torch_dtype", "float32");
        }

        public Builder vocabSize(int v) {
            json.put("vocab_size", v);
            return this;
        }

        public Builder nPositions(int v) {
            json.put("n_positions", v);
            return this;
        }

        public Builder nEmbd(int v) {
            json.put("n_embd", v);
            return this;
        }

        public Builder nLayer(int v) {
            json.put("n_layer", v);
            return this;
        }

        public Builder nHead(int v) {
            json.put("n_head", v);
            return this;
        }

        /** MLP width; null restores the 4 * n_embd default. */
        public Builder nInner(Integer v) {
            if (v == null) {
                json.putNull("n_inner");
            } else {
                json.put("n_inner", v);
            }
            return this;
        }

        public Builder activationFunction(String v) {
            json.put("activation_function", v);
            return this;
        }

        public Builder layerNormEpsilon(double v) {
            json.put("layer_norm_epsilon", v);
            return this;
        }

        public Builder initializerRange(double v) {
            json.put("initializer_range", v);
            return this;
        }

        /** Sets {@code embd_pdrop}, {@code attn_pdrop} and {@code resid_pdrop} together. */
        public Builder dropout(double p) {
            json.put("embd_pdrop", p);
            json.put("attn_pdrop", p);
            json.put("resid_pdrop", p);
            return this;
        }

        public Builder scaleAttnWeights(boolean v) {
            json.put("scale_attn_weights", v);
            return this;
        }

        public Builder scaleAttnByInverseLayerIdx(boolean v) {
            json.put("scale_attn_by_inverse_layer_idx", v);
            return this;
        }

        public Builder bosTokenId(Integer v) {
            return putOrNull("bos_token_id", v);
        }

        public Builder eosTokenId(Integer v) {
            return putOrNull("eos_token_id", v);
        }

        public Builder padTokenId(Integer v) {
            return putOrNull("pad_token_id", v);
        }

        /** Written as {@code id2label} ({@code LABEL_i}), which is how transformers saves it. */
        public Builder numLabels(int n) {
            ClassifierHead.putNumLabels(json, n);
            return this;
        }

        public Builder problemType(String v) {
            json.put("problem_type", v);
            return this;
        }

        public Builder tieWordEmbeddings(boolean v) {
            json.put("tie_word_embeddings", v);
            return this;
        }

        /** Sets any other key; {@code value} is converted with Jackson. */
        public Builder set(String key, Object value) {
            json.set(key, JSON.valueToTree(value));
            return this;
        }

        private Builder putOrNull(String key, Integer v) {
            if (v == null) {
                json.putNull(key);
            } else {
                json.put(key, v);
            }
            return this;
        }

        public Gpt2Config build() {
            return new Gpt2Config(new ModelConfig(json, "<Gpt2Config.builder>"));
        }
    }
}
