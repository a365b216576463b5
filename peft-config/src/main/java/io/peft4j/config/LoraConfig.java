package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Configuration of a LoRA adapter ({@code peft_type} LORA), with every field of peft's {@code LoraConfig}.
 *
 * <pre>{@code
 * LoraConfig c = LoraConfig.builder().r(16).loraAlpha(32).targetModules("q_proj", "v_proj")
 *         .taskType(TaskType.CAUSAL_LM).build();
 * }</pre>
 */
public final class LoraConfig extends AbstractLoraConfig {
    static final ConfigSchema SCHEMA = loraSchema("LoraConfig", PeftType.LORA);

    private final Map<String, Integer> rankPattern;

    private LoraConfig(Builder b) {
        super(b);
        JsonNode v = raw("rank_pattern");
        Map<String, Integer> out = new LinkedHashMap<>();
        if (!v.isNull()) {
            if (!v.isObject()) {
                throw error("rank_pattern", "must be an object mapping patterns to ranks", v);
            }
            for (Map.Entry<String, JsonNode> e : v.properties()) {
                JsonNode rank = e.getValue();
                if (!rank.isIntegralNumber() || !rank.canConvertToInt()) {
                    throw error("rank_pattern", "must map patterns to integer ranks; entry '" + e.getKey() + "'",
                            rank);
                }
                if (rank.intValue() <= 0) {
                    throw error("rank_pattern", "must map patterns to ranks > 0; entry '" + e.getKey() + "'",
                            rank);
                }
                out.put(e.getKey(), rank.intValue());
            }
        }
        this.rankPattern = Collections.unmodifiableMap(out);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding this config's state, including the key set it writes and its unknown keys. */
    public Builder toBuilder() {
        return new Builder(this);
    }

    static LoraConfig parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    /** Per-module rank overrides ({@code {regex: r}}), in JSON order; never null. */
    public Map<String, Integer> rankPattern() {
        return rankPattern;
    }

    /** Builder for {@link LoraConfig}; defaults are peft's. */
    public static final class Builder extends LoraBuilderBase<LoraConfig, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(LoraConfig from) {
            super(SCHEMA, from);
        }

        /** Insertion order is kept. */
        public Builder rankPattern(Map<String, Integer> rankPattern) {
            return setObject("rank_pattern", rankPattern == null ? Map.of() : new LinkedHashMap<>(rankPattern));
        }

        @Override
        public LoraConfig build() {
            return new LoraConfig(this);
        }
    }
}
