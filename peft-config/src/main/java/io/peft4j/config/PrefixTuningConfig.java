package io.peft4j.config;

import com.fasterxml.jackson.databind.node.ObjectNode;

/** Prefix tuning ({@code peft_type} PREFIX_TUNING): trainable key/value prefixes for every layer. */
public final class PrefixTuningConfig extends PromptLearningConfig {
    static final ConfigSchema SCHEMA = promptSchema("PrefixTuningConfig", PeftType.PREFIX_TUNING)
            .legacy("encoder_hidden_size", null)
            .legacy("prefix_projection", false)
            .newer("init_weights", null);

    private final Integer encoderHiddenSize;
    private final boolean prefixProjection;
    private final String initWeights;

    private PrefixTuningConfig(Builder b) {
        super(b);
        this.encoderHiddenSize = optInteger("encoder_hidden_size");
        this.prefixProjection = bool("prefix_projection");
        this.initWeights = optString("init_weights");
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    static PrefixTuningConfig parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    /** Hidden size of the projection MLP (used with {@link #prefixProjection()}), or null for token_dim. */
    public Integer encoderHiddenSize() {
        return encoderHiddenSize;
    }

    public boolean prefixProjection() {
        return prefixProjection;
    }

    /** Initialisation of the prefix ("zero" in newer peft), or null for the default random init. */
    public String initWeights() {
        return initWeights;
    }

    /** Builder for {@link PrefixTuningConfig}. */
    public static final class Builder extends PromptBuilderBase<PrefixTuningConfig, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(PrefixTuningConfig from) {
            super(SCHEMA, from);
        }

        public Builder encoderHiddenSize(Integer v) {
            return setObject("encoder_hidden_size", v);
        }

        public Builder prefixProjection(boolean v) {
            return setObject("prefix_projection", v);
        }

        public Builder initWeights(String v) {
            return setObject("init_weights", v);
        }

        @Override
        public PrefixTuningConfig build() {
            return new PrefixTuningConfig(this);
        }
    }
}
