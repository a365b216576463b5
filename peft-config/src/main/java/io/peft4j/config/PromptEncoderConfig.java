package io.peft4j.config;

import com.fasterxml.jackson.databind.node.ObjectNode;

/** P-tuning ({@code peft_type} P_TUNING): virtual token embeddings produced by a small MLP/LSTM encoder. */
public final class PromptEncoderConfig extends PromptLearningConfig {
    static final ConfigSchema SCHEMA = promptSchema("PromptEncoderConfig", PeftType.P_TUNING)
            .legacy("encoder_reparameterization_type", "MLP")
            .legacy("encoder_hidden_size", null)
            .legacy("encoder_num_layers", 2)
            .legacy("encoder_dropout", 0.0);

    private final PromptEncoderReparameterizationType encoderReparameterizationType;
    private final Integer encoderHiddenSize;
    private final int encoderNumLayers;
    private final double encoderDropout;

    private PromptEncoderConfig(Builder b) {
        super(b);
        this.encoderReparameterizationType =
                requiredEnum("encoder_reparameterization_type", PromptEncoderReparameterizationType.class);
        this.encoderHiddenSize = optInteger("encoder_hidden_size");
        this.encoderNumLayers = integer("encoder_num_layers");
        this.encoderDropout = dbl("encoder_dropout");
        if (!(encoderDropout >= 0.0 && encoderDropout < 1.0)) {
            throw error("encoder_dropout", "must be in [0, 1)", raw("encoder_dropout"));
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    static PromptEncoderConfig parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    public PromptEncoderReparameterizationType encoderReparameterizationType() {
        return encoderReparameterizationType;
    }

    /** Hidden size of the encoder, or null for token_dim. */
    public Integer encoderHiddenSize() {
        return encoderHiddenSize;
    }

    /** LSTM layers (peft ignores it for MLP, which always has two). */
    public int encoderNumLayers() {
        return encoderNumLayers;
    }

    public double encoderDropout() {
        return encoderDropout;
    }

    /** Builder for {@link PromptEncoderConfig}. */
    public static final class Builder extends PromptBuilderBase<PromptEncoderConfig, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(PromptEncoderConfig from) {
            super(SCHEMA, from);
        }

        public Builder encoderReparameterizationType(PromptEncoderReparameterizationType v) {
            return setObject("encoder_reparameterization_type", v == null ? null : v.name());
        }

        public Builder encoderHiddenSize(Integer v) {
            return setObject("encoder_hidden_size", v);
        }

        public Builder encoderNumLayers(int v) {
            return setObject("encoder_num_layers", v);
        }

        public Builder encoderDropout(double v) {
            return setObject("encoder_dropout", v);
        }

        @Override
        public PromptEncoderConfig build() {
            return new PromptEncoderConfig(this);
        }
    }
}
