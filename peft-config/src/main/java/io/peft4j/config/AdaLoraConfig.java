package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdaLoRA ({@code peft_type} ADALORA): LoRA fields plus the rank-budget schedule. Unlike LoRA, {@code rank_pattern}
 * holds the pruning masks found during training ({@code {lora_E name: [bool] * init_r}}) and defaults to null.
 */
public final class AdaLoraConfig extends AbstractLoraConfig {
    static final ConfigSchema SCHEMA = loraSchema("AdaLoraConfig", PeftType.ADALORA)
            .legacy("target_r", 8)
            .legacy("init_r", 12)
            .legacy("tinit", 0)
            .legacy("tfinal", 0)
            .legacy("deltaT", 1)
            .legacy("beta1", 0.85)
            .legacy("beta2", 0.85)
            .legacy("orth_reg_weight", 0.5)
            .legacy("total_step", null)
            .legacy("rank_pattern", null);

    private final int targetR;
    private final int initR;
    private final int tinit;
    private final int tfinal;
    private final int deltaT;
    private final double beta1;
    private final double beta2;
    private final double orthRegWeight;
    private final Integer totalStep;
    private final Map<String, List<Boolean>> rankPattern;

    private AdaLoraConfig(Builder b) {
        super(b);
        this.targetR = integer("target_r");
        this.initR = integer("init_r");
        this.tinit = integer("tinit");
        this.tfinal = integer("tfinal");
        this.deltaT = integer("deltaT");
        this.beta1 = dbl("beta1");
        this.beta2 = dbl("beta2");
        this.orthRegWeight = dbl("orth_reg_weight");
        this.totalStep = optInteger("total_step");
        this.rankPattern = decodeMasks();
        if (useDora()) {
            throw error("use_dora", "is not supported by ADALORA", true);
        }
        if (!loftqConfig().isNull() && !loftqConfig().isEmpty()) {
            throw error("loftq_config", "is not supported by ADALORA", loftqConfig());
        }
        if (orthRegWeight < 0) {
            throw error("orth_reg_weight", "must be >= 0", raw("orth_reg_weight"));
        }
        // peft 0.13.2 accepted total_step=None at construction (its files contain null), so only check it when set
        if (totalStep != null) {
            if (totalStep <= 0) {
                throw error("total_step", "must be > 0", totalStep);
            }
            if (tinit >= totalStep - tfinal) {
                throw error("tinit", "must be < total_step - tfinal (" + totalStep + " - " + tfinal
                        + ") so that a budgeting phase remains", tinit);
            }
        }
    }

    private Map<String, List<Boolean>> decodeMasks() {
        JsonNode v = raw("rank_pattern");
        if (v.isNull()) {
            return null;
        }
        if (!v.isObject()) {
            throw error("rank_pattern", "must be null or an object mapping parameter names to lists of booleans", v);
        }
        Map<String, List<Boolean>> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : v.properties()) {
            if (!e.getValue().isArray()) {
                throw error("rank_pattern", "must map parameter names to lists of booleans; entry '"
                        + e.getKey() + "'", e.getValue());
            }
            List<Boolean> mask = new ArrayList<>();
            for (JsonNode bit : e.getValue()) {
                if (!bit.isBoolean()) {
                    throw error("rank_pattern", "must map parameter names to lists of booleans; entry '"
                            + e.getKey() + "'", e.getValue());
                }
                mask.add(bit.booleanValue());
            }
            out.put(e.getKey(), Collections.unmodifiableList(mask));
        }
        return Collections.unmodifiableMap(out);
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        return new Builder(this);
    }

    static AdaLoraConfig parse(ObjectNode tree, String source) {
        return new Builder().readJson(tree, source).build();
    }

    public int targetR() {
        return targetR;
    }

    public int initR() {
        return initR;
    }

    public int tinit() {
        return tinit;
    }

    public int tfinal() {
        return tfinal;
    }

    public int deltaT() {
        return deltaT;
    }

    public double beta1() {
        return beta1;
    }

    public double beta2() {
        return beta2;
    }

    public double orthRegWeight() {
        return orthRegWeight;
    }

    /** Total training steps, or null (allowed by peft 0.13.2; needed before training). */
    public Integer totalStep() {
        return totalStep;
    }

    /** Rank masks per {@code lora_E} parameter name, or null before any budget allocation. */
    public Map<String, List<Boolean>> rankPattern() {
        return rankPattern;
    }

    /** Builder for {@link AdaLoraConfig}. */
    public static final class Builder extends LoraBuilderBase<AdaLoraConfig, Builder> {
        Builder() {
            super(SCHEMA);
        }

        Builder(AdaLoraConfig from) {
            super(SCHEMA, from);
        }

        public Builder targetR(int v) {
            return setObject("target_r", v);
        }

        public Builder initR(int v) {
            return setObject("init_r", v);
        }

        public Builder tinit(int v) {
            return setObject("tinit", v);
        }

        public Builder tfinal(int v) {
            return setObject("tfinal", v);
        }

        public Builder deltaT(int v) {
            return setObject("deltaT", v);
        }

        public Builder beta1(double v) {
            return setObject("beta1", v);
        }

        public Builder beta2(double v) {
            return setObject("beta2", v);
        }

        public Builder orthRegWeight(double v) {
            return setObject("orth_reg_weight", v);
        }

        public Builder totalStep(Integer v) {
            return setObject("total_step", v);
        }

        public Builder rankPattern(Map<String, List<Boolean>> masks) {
            return setObject("rank_pattern", masks == null ? null : new LinkedHashMap<>(masks));
        }

        @Override
        public AdaLoraConfig build() {
            return new AdaLoraConfig(this);
        }
    }
}
