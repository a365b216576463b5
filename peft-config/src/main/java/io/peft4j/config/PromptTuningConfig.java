package io.peft4j.config;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.LinkedHashMap;
import java.util.Map;

/** Prompt tuning ({@code peft_type} PROMPT_TUNING): trainable embeddings of virtual tokens. */
public final class PromptTuningConfig extends PromptLearningConfig {
    static final ConfigSchema SCHEMA = promptSchema("PromptTuningConfig", PeftType.PROMPT_TUNING)
            .legacy("prompt_tuning_init", "RANDOM")
            .legacy("prompt_tuning_init_text", null)
            .legacy("tokenizer_name_or_path", null)
            .legacy("tokenizer_kwargs", null);

    private final PromptTuningInit promptTuningInit;
    private final String promptTuningInitText;
    private final String tokenizerNameOrPath;
    private final Map<String, Object> tokenizerKwargs;

    private PromptTuningConfig(Builder b) {
        super(b);
        this.promptTuningInit = requiredEnum("prompt_tuning_init", PromptTuningInit.class);
        this.promptTuningInitText = optString("prompt_tuning_init_text");
        this.tokenizerNameOrPath = optString("tokenizer_name_or_path");
        this.tokenizerKwargs = optMap("tokenizer_kwargs");
        if (promptTuningInit == PromptTuningInit.TEXT) {
            if (tokenizerNameOrPath == null) {
                throw error("tokenizer_name_or_path", "must be set when 'prompt_tuning_init' is TEXT", null);
            }
            if (promptTuningInitText == null) {
                throw error("prompt_tuning_init_text", "must be set when 'prompt_tuning_init' is TEXT", null);
            }
        }
        if (tokenizerKwargs != null && promptTuningInit != PromptTuningInit.TEXT) {
            throw error("tokenizer_kwargs", "can only be used when 'prompt_tuning_init' is TEXT",
                    raw("tokenizer_kwargs"));
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    static PromptTuningConfig parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    public PromptTuningInit promptTuningInit() {
        return promptTuningInit;
    }

    public String promptTuningInitText() {
        return promptTuningInitText;
    }

    public String tokenizerNameOrPath() {
        return tokenizerNameOrPath;
    }

    public Map<String, Object> tokenizerKwargs() {
        return tokenizerKwargs;
    }

    /** Builder for {@link PromptTuningConfig}. */
    public static final class Builder extends PromptBuilderBase<PromptTuningConfig, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(PromptTuningConfig from) {
            super(SCHEMA, from);
        }

        public Builder promptTuningInit(PromptTuningInit v) {
            return setObject("prompt_tuning_init", v == null ? null : v.name());
        }

        public Builder promptTuningInitText(String v) {
            return setObject("prompt_tuning_init_text", v);
        }

        public Builder tokenizerNameOrPath(String v) {
            return setObject("tokenizer_name_or_path", v);
        }

        public Builder tokenizerKwargs(Map<String, ?> v) {
            return setObject("tokenizer_kwargs", v == null ? null : new LinkedHashMap<>(v));
        }

        @Override
        public PromptTuningConfig build() {
            return new PromptTuningConfig(this);
        }
    }
}
