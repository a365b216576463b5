package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Objects;

/**
 * peft's {@code LoraGAConfig}, the {@code lora_ga_config} of a {@link LoraConfig} with
 * {@code init_lora_weights="lora_ga"} (LoRA-GA, Wang et al. 2024, arXiv:2407.05000).
 *
 * <ul>
 *   <li>{@code direction}: which of the first {@code 2r} singular components of the gradient go to A (right
 *       singular vectors) and to B (left ones): {@code "ArB2r"} (default: A the first r, B the next r),
 *       {@code "A2rBr"} (the reverse), {@code "ArBr"} (A the odd, B the even ones), {@code "random"} (a random
 *       split);</li>
 *   <li>{@code scale}: {@code "stable"} (default: both times {@code out^(1/4) / sqrt(stable_gamma)}),
 *       {@code "gd_scale"} (both divided by the LoRA scaling, so the first SGD step equals the full fine-tuning step
 *       projected on those components), {@code "weight_svd"} (both times the mean square root of the base weight's
 *       top-r singular values divided by the scaling) or {@code "unit"};</li>
 *   <li>{@code stable_gamma}: the γ of the stable scale (default 16).</li>
 * </ul>
 */
public final class LoraGAConfig {
    public static final List<String> DIRECTIONS = List.of("ArBr", "A2rBr", "ArB2r", "random");
    public static final List<String> SCALES = List.of("stable", "weight_svd", "gd_scale", "unit");

    private final String direction;
    private final String scale;
    private final Number stableGamma;

    /** peft's defaults: {@code ArB2r}, {@code stable}, γ = 16. */
    public LoraGAConfig() {
        this("ArB2r", "stable", 16);
    }

    public LoraGAConfig(String direction, String scale, Number stableGamma) {
        this.direction = check("direction", direction, DIRECTIONS);
        this.scale = check("scale", scale, SCALES);
        if (stableGamma == null || !(stableGamma.doubleValue() > 0)) {
            throw new PeftConfigException("LoraGAConfig: stable_gamma must be positive but was " + stableGamma);
        }
        this.stableGamma = stableGamma;
    }

    private static String check(String field, String value, List<String> allowed) {
        if (!allowed.contains(value)) {
            throw new PeftConfigException("LoraGAConfig: " + field + " must be one of " + allowed + " but was "
                    + (value == null ? "null" : "'" + value + "'"));
        }
        return value;
    }

    public String direction() {
        return direction;
    }

    public String scale() {
        return scale;
    }

    public double stableGamma() {
        return stableGamma.doubleValue();
    }

    /** The {@code lora_ga_config} object as peft writes it. */
    public ObjectNode toJsonNode() {
        ObjectNode n = PythonJson.NODES.objectNode();
        n.put("direction", direction);
        n.put("scale", scale);
        if (stableGamma instanceof Integer || stableGamma instanceof Long) {
            n.put("stable_gamma", stableGamma.longValue());
        } else {
            n.put("stable_gamma", stableGamma.doubleValue());
        }
        return n;
    }

    /** Parses a {@code lora_ga_config} object; missing keys take peft's defaults, unknown keys are ignored. */
    static LoraGAConfig fromJson(JsonNode node, String source) {
        if (!node.isObject()) {
            throw new PeftConfigException(source + ": field 'lora_ga_config' must be an object or null but was " + node);
        }
        try {
            JsonNode d = node.get("direction");
            JsonNode s = node.get("scale");
            JsonNode g = node.get("stable_gamma");
            return new LoraGAConfig(d == null ? "ArB2r" : d.asText(null), s == null ? "stable" : s.asText(null),
                    g == null ? 16 : g.isNumber() ? g.numberValue() : null);
        } catch (PeftConfigException e) {
            throw new PeftConfigException(source + ": field 'lora_ga_config': " + e.getMessage(), e);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LoraGAConfig c && direction.equals(c.direction) && scale.equals(c.scale)
                && stableGamma() == c.stableGamma();
    }

    @Override
    public int hashCode() {
        return Objects.hash(direction, scale, stableGamma());
    }

    @Override
    public String toString() {
        return "LoraGAConfig(direction=" + direction + ", scale=" + scale + ", stable_gamma=" + stableGamma + ")";
    }
}
