package io.peft4j.transformers.distilbert;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.transformers.ClassifierHead;
import io.peft4j.transformers.bert.BertConfig;

/**
 * Typed view of a DistilBERT {@code config.json} ({@code model_type} distilbert). The keys that fix tensor
 * shapes are required (transformers always writes them); the rest take transformers' defaults. Sinusoidal
 * position embeddings and unknown activations fail here, by name.
 */
public final class DistilBertConfig {
    /** The {@code model_type} this architecture implements. */
    public static final String MODEL_TYPE = "distilbert";

    /** DistilBERT hard-codes this LayerNorm epsilon (it is not a config key). */
    public static final double LAYER_NORM_EPS = 1e-12;

    private final ModelConfig source;
    private final int vocabSize;
    private final int dim;
    private final int nLayers;
    private final int nHeads;
    private final int hiddenDim;
    private final BertConfig.Activation activation;
    private final double dropout;
    private final double attentionDropout;
    private final int maxPositionEmbeddings;
    private final double seqClassifDropout;
    private final Integer padTokenId;
    private final int numLabels;
    private final ClassifierHead.ProblemType problemType;
    private final double initializerRange;

    /** Reads and validates {@code config}; fails naming the file and key for missing or unsupported settings. */
    public static DistilBertConfig of(ModelConfig config) {
        return new DistilBertConfig(config);
    }

    private DistilBertConfig(ModelConfig c) {
        this.source = c;
        String type = c.modelType();
        if (type != null && !type.equals(MODEL_TYPE)) {
            throw new IllegalArgumentException(c.source() + ": model_type '" + type + "' is not a DistilBERT model");
        }
        this.vocabSize = c.getInt("vocab_size");
        this.dim = c.getInt("dim");
        this.nLayers = c.getInt("n_layers");
        this.nHeads = c.getInt("n_heads");
        this.hiddenDim = c.getInt("hidden_dim");
        this.maxPositionEmbeddings = c.getInt("max_position_embeddings");
        this.activation = BertConfig.Activation.parse(c, "activation", c.getString("activation", "gelu"));
        this.dropout = c.getDouble("dropout", 0.1);
        this.attentionDropout = c.getDouble("attention_dropout", 0.1);
        this.seqClassifDropout = c.getDouble("seq_classif_dropout", 0.2);
        this.padTokenId = c.has("pad_token_id") ? c.getInt("pad_token_id") : null;
        this.initializerRange = c.getDouble("initializer_range", 0.02);
        this.numLabels = ClassifierHead.numLabels(c);
        this.problemType = ClassifierHead.problemType(c);
        if (c.getBoolean("sinusoidal_pos_embds", false)) {
            throw new IllegalArgumentException(c.source() + ": sinusoidal_pos_embds=true is not supported "
                    + "(only learned position embeddings)");
        }
        for (String k : new String[] {"vocab_size", "dim", "n_layers", "n_heads", "hidden_dim",
                "max_position_embeddings"}) {
            if (c.getInt(k) <= 0) {
                throw new IllegalArgumentException(c.source() + ": " + k + " must be positive, got " + c.getInt(k));
            }
        }
        if (dim % nHeads != 0) {
            throw new IllegalArgumentException(c.source() + ": dim (" + dim + ") is not a multiple of n_heads ("
                    + nHeads + ")");
        }
    }

    /** The underlying {@code config.json}. */
    public ModelConfig modelConfig() {
        return source;
    }

    public int vocabSize() {
        return vocabSize;
    }

    /** Hidden size ({@code dim}). */
    public int dim() {
        return dim;
    }

    public int nLayers() {
        return nLayers;
    }

    public int nHeads() {
        return nHeads;
    }

    public int headDim() {
        return dim / nHeads;
    }

    /** Feed-forward size ({@code hidden_dim}). */
    public int hiddenDim() {
        return hiddenDim;
    }

    public BertConfig.Activation activation() {
        return activation;
    }

    public double dropout() {
        return dropout;
    }

    public double attentionDropout() {
        return attentionDropout;
    }

    public int maxPositionEmbeddings() {
        return maxPositionEmbeddings;
    }

    public double seqClassifDropout() {
        return seqClassifDropout;
    }

    /** {@code pad_token_id} or null. */
    public Integer padTokenId() {
        return padTokenId;
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

    /** Builds a {@code config.json} in code; unset keys take distilbert-base-uncased's values. */
    public static final class Builder {
        private static final ObjectMapper JSON = new ObjectMapper();
        private final ObjectNode json = JSON.createObjectNode();

        private Builder() {
            json.putArray("architectures").add("DistilBertForSequenceClassification");
            json.put("model_type", MODEL_TYPE);
            json.put("vocab_size", 30522);
            json.put("dim", 768);
            json.put("n_layers", 6);
            json.put("n_heads", 12);
            json.put("hidden_dim", 3072);
            json.put("activation", "gelu");
            json.put("dropout", 0.1);
            json.put("attention_dropout", 0.1);
            json.put("max_position_embeddings", 512);
            json.put("sinusoidal_pos_embds", false);
            json.put("initializer_range", 0.02);
            json.put("qa_dropout", 0.1);
            json.put("seq_classif_dropout", 0.2);
            json.put("pad_token_id", 0);
            json.put("torch_dtype", "float32");
        }

        public Builder vocabSize(int v) {
            json.put("vocab_size", v);
            return this;
        }

        public Builder dim(int v) {
            json.put("dim", v);
            return this;
        }

        public Builder nLayers(int v) {
            json.put("n_layers", v);
            return this;
        }

        public Builder nHeads(int v) {
            json.put("n_heads", v);
            return this;
        }

        public Builder hiddenDim(int v) {
            json.put("hidden_dim", v);
            return this;
        }

        public Builder activation(String v) {
            json.put("activation", v);
            return this;
        }

        public Builder dropout(double v) {
            json.put("dropout", v);
            return this;
        }

        public Builder attentionDropout(double v) {
            json.put("attention_dropout", v);
            return this;
        }

        public Builder maxPositionEmbeddings(int v) {
            json.put("max_position_embeddings", v);
            return this;
        }

        public Builder sinusoidalPosEmbds(boolean v) {
            json.put("sinusoidal_pos_embds", v);
            return this;
        }

        public Builder seqClassifDropout(double v) {
            json.put("seq_classif_dropout", v);
            return this;
        }

        public Builder padTokenId(int v) {
            json.put("pad_token_id", v);
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

        public DistilBertConfig build() {
            return new DistilBertConfig(new ModelConfig(json, "<DistilBertConfig.builder>"));
        }
    }
}
