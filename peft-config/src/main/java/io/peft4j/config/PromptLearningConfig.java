package io.peft4j.config;

import java.util.Arrays;
import java.util.List;

/**
 * Base of prompt-learning configs (prompt tuning, prefix tuning, P-tuning): virtual tokens prepended to the input.
 * Null dimensions are resolved from the base model's config at model-creation time.
 */
public abstract class PromptLearningConfig extends PeftConfig {

    static ConfigSchema promptSchema(String className, PeftType type) {
        return ConfigSchema.base(className, type)
                .legacy("num_virtual_tokens", null)
                .legacy("token_dim", null)
                .legacy("num_transformer_submodules", null)
                .legacy("num_attention_heads", null)
                .legacy("num_layers", null)
                .newer("modules_to_save", null);
    }

    private final Integer numVirtualTokens;
    private final Integer tokenDim;
    private final Integer numTransformerSubmodules;
    private final Integer numAttentionHeads;
    private final Integer numLayers;
    private final List<String> modulesToSave;

    protected PromptLearningConfig(PromptBuilderBase<?, ?> b) {
        super(b);
        this.numVirtualTokens = optInteger("num_virtual_tokens");
        this.tokenDim = optInteger("token_dim");
        this.numTransformerSubmodules = optInteger("num_transformer_submodules");
        this.numAttentionHeads = optInteger("num_attention_heads");
        this.numLayers = optInteger("num_layers");
        this.modulesToSave = optStringList("modules_to_save");
        positiveOrNull("num_virtual_tokens", numVirtualTokens);
        positiveOrNull("token_dim", tokenDim);
        positiveOrNull("num_transformer_submodules", numTransformerSubmodules);
        positiveOrNull("num_attention_heads", numAttentionHeads);
        positiveOrNull("num_layers", numLayers);
    }

    private void positiveOrNull(String field, Integer value) {
        if (value != null && value <= 0) {
            throw error(field, "must be > 0", value);
        }
    }

    @Override
    public boolean isPromptLearning() {
        return true;
    }

    /** Number of virtual tokens; peft requires it before a model is created (null only in half-built configs). */
    public Integer numVirtualTokens() {
        return numVirtualTokens;
    }

    /** Hidden size of the base model, or null (resolved from the model config). */
    public Integer tokenDim() {
        return tokenDim;
    }

    /** 2 for encoder-decoder models, 1 otherwise; null until resolved. */
    public Integer numTransformerSubmodules() {
        return numTransformerSubmodules;
    }

    public Integer numAttentionHeads() {
        return numAttentionHeads;
    }

    public Integer numLayers() {
        return numLayers;
    }

    public List<String> modulesToSave() {
        return modulesToSave;
    }

    /** Setters shared by the prompt-learning builders. */
    public abstract static class PromptBuilderBase<C extends PromptLearningConfig, B extends PromptBuilderBase<C, B>>
            extends AbstractBuilder<C, B> {

        protected PromptBuilderBase(ConfigSchema schema) {
            super(schema);
        }

        protected PromptBuilderBase(ConfigSchema schema, PeftConfig from) {
            super(schema, from);
        }

        public B numVirtualTokens(Integer v) {
            return setObject("num_virtual_tokens", v);
        }

        public B tokenDim(Integer v) {
            return setObject("token_dim", v);
        }

        public B numTransformerSubmodules(Integer v) {
            return setObject("num_transformer_submodules", v);
        }

        public B numAttentionHeads(Integer v) {
            return setObject("num_attention_heads", v);
        }

        public B numLayers(Integer v) {
            return setObject("num_layers", v);
        }

        public B modulesToSave(String... modules) {
            return setObject("modules_to_save", Arrays.asList(modules));
        }

        public B modulesToSave(List<String> modules) {
            return setObject("modules_to_save", modules);
        }
    }
}
