package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.F;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.transformers.ClassifierHead;

/**
 * Typed view of a BERT {@code config.json} ({@code model_type} bert). The keys that fix tensor shapes are
 * required (transformers always writes them); the rest take transformers' defaults. Settings the model
 * cannot honour (relative positions, decoder use, other activations) fail here, by name.
 */
public final class BertConfig {
    /** The {@code model_type} this architecture implements. */
    public static final String MODEL_TYPE = "bert";

    /** The activations of transformers' {@code ACT2FN} that BERT-family checkpoints use. */
    public enum Activation {
        /** Exact (erf) GELU, transformers' {@code "gelu"}. */
        GELU("gelu"),
        /** tanh-approximated GELU, transformers' {@code "gelu_new"}. */
        GELU_NEW("gelu_new"),
        RELU("relu");

        private final String hfName;

        Activation(String hfName) {
            this.hfName = hfName;
        }

        public String hfName() {
            return hfName;
        }

        public NDArray apply(NDArray x) {
            return switch (this) {
                case GELU -> F.gelu(x);
                case GELU_NEW -> F.geluTanh(x);
                case RELU -> F.relu(x);
            };
        }

        /** Parses {@code value} of {@code key}; an unknown name fails with the file, key and the names known. */
        public static Activation parse(ModelConfig c, String key, String value) {
            for (Activation a : values()) {
                if (a.hfName.equals(value)) {
                    return a;
                }
            }
            throw new IllegalArgumentException(c.source() + ": " + key + " '" + value
                    + "' is not supported (supported: gelu, gelu_new, relu)");
        }
    }

    private final ModelConfig source;
    private final int vocabSize;
    private final int hiddenSize;
    private final int numHiddenLayers;
    private final int numAttentionHeads;
    private final int intermediateSize;
    private final Activation hiddenAct;
    private final double hiddenDropoutProb;
    private final double attentionProbsDropoutProb;
    private final int maxPositionEmbeddings;
    private final int typeVocabSize;
    private final double layerNormEps;
    private final Integer padTokenId;
    private final String positionEmbeddingType;
    private final Double classifierDropout;
    private final int numLabels;
    private final ClassifierHead.ProblemType problemType;
    private final double initializerRange;

    /** Reads and validates {@code config}; fails naming the file and key for missing or unsupported settings. */
    public static BertConfig of(ModelConfig config) {
        return new BertConfig(config);
    }

    private BertConfig(ModelConfig c) {
        this.source = c;
        String type = c.modelType();
        if (type != null && !type.equals(MODEL_TYPE)) {
            throw new IllegalArgumentException(c.source() + ": model_type '" + type + "' is not a BERT model");
        }
        this.vocabSize = c.getInt("vocab_size");
        this.hiddenSize = c.getInt("hidden_size");
        this.numHiddenLayers = c.getInt("num_hidden_layers");
        this.numAttentionHeads = c.getInt("num_attention_heads");
        this.intermediateSize = c.getInt("intermediate_size");
        this.maxPositionEmbeddings = c.getInt("max_position_embeddings");
        this.typeVocabSize = c.getInt("type_vocab_size");
        this.hiddenAct = Activation.parse(c, "hidden_act", c.getString("hidden_act", "gelu"));
        this.hiddenDropoutProb = c.getDouble("hidden_dropout_prob", 0.1);
        this.attentionProbsDropoutProb = c.getDouble("attention_probs_dropout_prob", 0.1);
        this.layerNormEps = c.getDouble("layer_norm_eps", 1e-12);
        this.padTokenId = c.has("pad_token_id") ? c.getInt("pad_token_id") : null;
        this.classifierDropout = c.has("classifier_dropout") ? c.getDouble("classifier_dropout") : null;
        this.initializerRange = c.getDouble("initializer_range", 0.02);
        this.numLabels = ClassifierHead.numLabels(c);
        this.problemType = ClassifierHead.problemType(c);

        this.positionEmbeddingType = c.getString("position_embedding_type", "absolute");
        if (!positionEmbeddingType.equals("absolute")) {
            throw new IllegalArgumentException(c.source() + ": position_embedding_type '" + positionEmbeddingType
                    + "' is not supported (only 'absolute')");
        }
        if (c.getBoolean("is_decoder", false) || c.getBoolean("add_cross_attention", false)) {
            throw new IllegalArgumentException(c.source() + ": is_decoder / add_cross_attention are not supported "
                    + "(BERT is implemented as a bidirectional encoder)");
        }
        for (String k : new String[] {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size"}) {
            if (c.getInt(k) <= 0) {
                throw new IllegalArgumentException(c.source() + ": " + k + " must be positive, got " + c.getInt(k));
            }
        }
        if (hiddenSize % numAttentionHeads != 0) {
            throw new IllegalArgumentException(c.source() + ": hidden_size (" + hiddenSize
                    + ") is not a multiple of num_attention_heads (" + numAttentionHeads + ")");
        }
    }

    /** The underlying {@code config.json}. */
    public ModelConfig modelConfig() {
        return source;
    }

    public int vocabSize() {
        return vocabSize;
    }

    public int hiddenSize() {
        return hiddenSize;
    }

    public int numHiddenLayers() {
        return numHiddenLayers;
    }

    public int numAttentionHeads() {
        return numAttentionHeads;
    }

    public int headDim() {
        return hiddenSize / numAttentionHeads;
    }

    public int intermediateSize() {
        return intermediateSize;
    }

    public Activation hiddenAct() {
        return hiddenAct;
    }

    public double hiddenDropoutProb() {
        return hiddenDropoutProb;
    }

    public double attentionProbsDropoutProb() {
        return attentionProbsDropoutProb;
    }

    public int maxPositionEmbeddings() {
        return maxPositionEmbeddings;
    }

    public int typeVocabSize() {
        return typeVocabSize;
    }

    public double layerNormEps() {
        return layerNormEps;
    }

    /** {@code pad_token_id} or null. */
    public Integer padTokenId() {
        return padTokenId;
    }

    /** Always {@code "absolute"} (anything else is rejected). */
    public String positionEmbeddingType() {
        return positionEmbeddingType;
    }

    /** {@code classifier_dropout}, or null to use {@code hidden_dropout_prob}. */
    public Double classifierDropout() {
        return classifierDropout;
    }

    /** Dropout before the classifier: {@code classifier_dropout} if set, else {@code hidden_dropout_prob}. */
    public double effectiveClassifierDropout() {
        return classifierDropout != null ? classifierDropout : hiddenDropoutProb;
    }

    public int numLabels() {
        return numLabels;
    }

    /** {@code problem_type}, or null to infer it from {@code num_labels} and the label dtype. */
    public ClassifierHead.ProblemType problemType() {
        return problemType;
    }

    public double initializerRange() {
        return initializerRange;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@code config.json} in code; unset keys take bert-base-uncased's values. */
    public static final class Builder {
        private static final ObjectMapper JSON = new ObjectMapper();
        private final ObjectNode json = JSON.createObjectNode();

        private Builder() {
            json.putArray("architectures").add("BertForSequenceClassification");
            json.put("model_type", MODEL_TYPE);
            json.put("vocab_size", 30522);
            json.put("hidden_size", 768);
            json.put("num_hidden_layers", 12);
            json.put("num_attention_heads", 12);
            json.put("intermediate_size", 3072);
            json.put("hidden_act", "gelu");
            json.put("hidden_dropout_prob", 0.1);
            json.put("attention_probs_dropout_prob", 0.1);
            json.put("max_position_embeddings", 512);
            json.put("type_vocab_size", 2);
            json.put("initializer_range", 0.02);
            json.put("layer_norm_eps", 1e-12);
            json.put("pad_token_id", 0);
            json.put("position_embedding_type", "absolute");
            json.putNull("classifier_dropout");
            json.put("torch_dtype", "float32");
        }

        public Builder vocabSize(int v) {
            json.put("vocab_size", v);
            return this;
        }

        public Builder hiddenSize(int v) {
            json.put("hidden_size", v);
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

        public Builder intermediateSize(int v) {
            json.put("intermediate_size", v);
            return this;
        }

        public Builder hiddenAct(String v) {
            json.put("hidden_act", v);
            return this;
        }

        public Builder hiddenDropoutProb(double v) {
            json.put("hidden_dropout_prob", v);
            return this;
        }

        public Builder attentionProbsDropoutProb(double v) {
            json.put("attention_probs_dropout_prob", v);
            return this;
        }

        public Builder maxPositionEmbeddings(int v) {
            json.put("max_position_embeddings", v);
            return this;
        }

        public Builder typeVocabSize(int v) {
            json.put("type_vocab_size", v);
            return this;
        }

        public Builder layerNormEps(double v) {
            json.put("layer_norm_eps", v);
            return this;
        }

        public Builder padTokenId(int v) {
            json.put("pad_token_id", v);
            return this;
        }

        /** Null means: use {@code hidden_dropout_prob}. */
        public Builder classifierDropout(Double v) {
            if (v == null) {
                json.putNull("classifier_dropout");
            } else {
                json.put("classifier_dropout", v);
            }
            return this;
        }

        /** Writes {@code id2label}/{@code label2id} with {@code LABEL_i} names, as transformers' setter does. */
        public Builder numLabels(int v) {
            ClassifierHead.putNumLabels(json, v);
            return this;
        }

        /** {@code regression}, {@code single_label_classification}, {@code multi_label_classification} or null. */
        public Builder problemType(String v) {
            if (v == null) {
                json.putNull("problem_type");
            } else {
                json.put("problem_type", v);
            }
            return this;
        }

        public Builder initializerRange(double v) {
            json.put("initializer_range", v);
            return this;
        }

        /** Sets any other key; {@code value} is converted with Jackson (null removes the key). */
        public Builder set(String key, Object value) {
            if (value == null) {
                json.remove(key);
            } else {
                json.set(key, JSON.valueToTree(value));
            }
            return this;
        }

        public BertConfig build() {
            return new BertConfig(new ModelConfig(json, "<BertConfig.builder>"));
        }
    }
}
