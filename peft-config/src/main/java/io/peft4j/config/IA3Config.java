package io.peft4j.config;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;

/** Configuration of an (IA)³ adapter ({@code peft_type} IA3): learned vectors rescaling activations. */
public final class IA3Config extends PeftConfig {
    static final ConfigSchema SCHEMA = ConfigSchema.base("IA3Config", PeftType.IA3)
            .legacy("target_modules", null)
            .newer("exclude_modules", null)
            .legacy("feedforward_modules", null)
            .legacy("fan_in_fan_out", false)
            .legacy("modules_to_save", null)
            .legacy("init_ia3_weights", true);

    private final TargetModules targetModules;
    private final TargetModules excludeModules;
    private final TargetModules feedforwardModules;
    private final boolean fanInFanOut;
    private final List<String> modulesToSave;
    private final boolean initIa3Weights;

    private IA3Config(Builder b) {
        super(b);
        this.targetModules = optTargetModules("target_modules");
        this.excludeModules = optTargetModules("exclude_modules");
        this.feedforwardModules = optTargetModules("feedforward_modules");
        this.fanInFanOut = bool("fan_in_fan_out");
        this.modulesToSave = optStringList("modules_to_save");
        this.initIa3Weights = bool("init_ia3_weights");
        // peft only checks the subset relation when both are name sets (not regex strings)
        if (targetModules != null && feedforwardModules != null && !targetModules.isRegex()
                && !feedforwardModules.isRegex() && !targetModules.names().containsAll(feedforwardModules.names())) {
            throw error("feedforward_modules", "must be a subset of 'target_modules' " + targetModules,
                    feedforwardModules);
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    static IA3Config parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    public TargetModules targetModules() {
        return targetModules;
    }

    public TargetModules excludeModules() {
        return excludeModules;
    }

    /** Modules whose IA3 vector scales the input (feed-forward) rather than the output. */
    public TargetModules feedforwardModules() {
        return feedforwardModules;
    }

    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    public List<String> modulesToSave() {
        return modulesToSave;
    }

    public boolean initIa3Weights() {
        return initIa3Weights;
    }

    /** Builder for {@link IA3Config}. */
    public static final class Builder extends AbstractBuilder<IA3Config, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(IA3Config from) {
            super(SCHEMA, from);
        }

        public Builder targetModules(String... names) {
            return targetModules(TargetModules.of(names));
        }

        public Builder targetModules(Collection<String> names) {
            return targetModules(names == null ? null : TargetModules.of(names));
        }

        public Builder targetModules(TargetModules t) {
            return set("target_modules", t == null ? null : t.toJsonNode());
        }

        public Builder excludeModules(TargetModules t) {
            return set("exclude_modules", t == null ? null : t.toJsonNode());
        }

        public Builder feedforwardModules(String... names) {
            return feedforwardModules(TargetModules.of(names));
        }

        public Builder feedforwardModules(TargetModules t) {
            return set("feedforward_modules", t == null ? null : t.toJsonNode());
        }

        public Builder fanInFanOut(boolean v) {
            return setObject("fan_in_fan_out", v);
        }

        public Builder modulesToSave(String... modules) {
            return setObject("modules_to_save", Arrays.asList(modules));
        }

        public Builder modulesToSave(List<String> modules) {
            return setObject("modules_to_save", modules);
        }

        public Builder initIa3Weights(boolean v) {
            return setObject("init_ia3_weights", v);
        }

        @Override
        public IA3Config build() {
            return new IA3Config(this);
        }
    }
}
