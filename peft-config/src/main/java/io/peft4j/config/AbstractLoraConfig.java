package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Fields and rules shared by {@link LoraConfig} and {@link AdaLoraConfig} (peft's AdaLoraConfig subclasses
 * LoraConfig). Only {@code rank_pattern} differs in meaning, so it lives in the subclasses.
 */
public abstract class AbstractLoraConfig extends PeftConfig {

    /** Which biases are trained and saved. */
    public enum Bias {
        NONE("none"), ALL("all"), LORA_ONLY("lora_only");

        private final String value;

        Bias(String value) {
            this.value = value;
        }

        /** JSON value. */
        public String value() {
            return value;
        }

        /** Parses a JSON value; throws for unknown strings, listing the allowed ones. */
        public static Bias fromValue(String value) {
            for (Bias b : values()) {
                if (b.value.equals(value)) {
                    return b;
                }
            }
            throw new PeftConfigException("LoraConfig: field 'bias' must be one of " + allowed()
                    + " but was '" + value + "'");
        }

        static List<String> allowed() {
            return Arrays.stream(values()).map(Bias::value).toList();
        }
    }

    /** Every LoraConfig field in declaration order; legacy = written by peft 0.13.2 for a fresh config. */
    static ConfigSchema loraSchema(String className, PeftType type) {
        return ConfigSchema.base(className, type)
                .legacy("r", 8)
                .legacy("target_modules", null)
                .newer("exclude_modules", null)
                .legacy("lora_alpha", 8)
                .legacy("lora_dropout", 0.0)
                .legacy("fan_in_fan_out", false)
                .legacy("bias", "none")
                .legacy("use_rslora", false)
                .legacy("modules_to_save", null)
                .legacy("init_lora_weights", true)
                .legacy("layers_to_transform", null)
                .legacy("layers_pattern", null)
                .legacy("rank_pattern", Map.of())
                .legacy("alpha_pattern", Map.of())
                .legacy("megatron_config", null)
                .legacy("megatron_core", "megatron.core")
                .newer("trainable_token_indices", null)
                .legacy("loftq_config", Map.of())
                .newer("eva_config", null)
                .newer("corda_config", null)
                .newer("lora_ga_config", null)
                .legacy("use_dora", false)
                .newer("velora_config", null)
                .newer("alora_invocation_tokens", null)
                .newer("use_qalora", false)
                .newer("qalora_group_size", 16)
                .newer("monteclora_config", null)
                .legacy("layer_replication", null)
                .newer("lora_bias", false)
                .newer("target_parameters", null)
                .newer("use_bdlora", null)
                .newer("arrow_config", null)
                .newer("kasa_config", null)
                .newer("ensure_weight_tying", false);
    }

    private final int r;
    private final TargetModules targetModules;
    private final TargetModules excludeModules;
    private final Number loraAlpha;
    private final double loraDropout;
    private final boolean fanInFanOut;
    private final Bias bias;
    private final boolean useRslora;
    private final List<String> modulesToSave;
    private final InitLoraWeights initLoraWeights;
    private final List<Integer> layersToTransform;
    private final List<String> layersPattern;
    private final Map<String, Number> alphaPattern;
    private final boolean useDora;
    private final boolean loraBias;
    private final List<String> targetParameters;
    private final boolean useQalora;
    private final int qaloraGroupSize;
    private final boolean ensureWeightTying;
    private final String megatronCore;
    private final LoraGAConfig loraGa;

    protected AbstractLoraConfig(LoraBuilderBase<?, ?> b) {
        super(b);
        this.r = integer("r");
        if (r <= 0) {
            throw error("r", "must be > 0", r);
        }
        this.targetModules = optTargetModules("target_modules");
        this.excludeModules = optTargetModules("exclude_modules");
        this.loraAlpha = number("lora_alpha");
        this.loraDropout = dbl("lora_dropout");
        if (!(loraDropout >= 0.0 && loraDropout < 1.0)) {
            throw error("lora_dropout", "must be in [0, 1)", raw("lora_dropout"));
        }
        this.fanInFanOut = bool("fan_in_fan_out");
        JsonNode biasNode = raw("bias");
        Bias parsedBias = null;
        for (Bias candidate : Bias.values()) {
            if (biasNode.isTextual() && candidate.value().equals(biasNode.textValue())) {
                parsedBias = candidate;
            }
        }
        if (parsedBias == null) {
            throw error("bias", "must be one of " + Bias.allowed(), biasNode);
        }
        this.bias = parsedBias;
        this.useRslora = bool("use_rslora");
        this.modulesToSave = optStringList("modules_to_save");
        this.initLoraWeights = InitLoraWeights.fromJson(raw("init_lora_weights"), source());
        this.layersToTransform = decodeLayersToTransform();
        this.layersPattern = decodeLayersPattern();
        this.alphaPattern = decodeAlphaPattern();
        this.useDora = bool("use_dora");
        this.loraBias = bool("lora_bias");
        this.targetParameters = optStringList("target_parameters");
        this.useQalora = bool("use_qalora");
        this.qaloraGroupSize = integer("qalora_group_size");
        this.ensureWeightTying = bool("ensure_weight_tying");
        this.megatronCore = optString("megatron_core");
        this.loraGa = isNull("lora_ga_config") ? null : LoraGAConfig.fromJson(raw("lora_ga_config"), source());

        if (targetModules != null && targetModules.isRegex()) {
            if (layersToTransform != null) {
                throw error("layers_to_transform", "cannot be used when 'target_modules' is a str ("
                        + targetModules + ")", raw("layers_to_transform"));
            }
            if (layersPattern != null) {
                throw error("layers_pattern", "cannot be used when 'target_modules' is a str ("
                        + targetModules + ")", raw("layers_pattern"));
            }
        }
        // peft tests Python truthiness here, so [] and a bare 0 count as "not specified"
        if (truthy(raw("layers_pattern")) && !truthy(raw("layers_to_transform"))) {
            throw error("layers_pattern", "requires 'layers_to_transform' to be specified as well",
                    raw("layers_pattern"));
        }
        if (useDora && loraBias) {
            throw error("lora_bias", "cannot be true together with 'use_dora'", true);
        }
        if (loraBias && initLoraWeights.isString()) {
            throw error("lora_bias", "requires 'init_lora_weights' to be true or false (it is '"
                    + initLoraWeights.name() + "')", true);
        }
        if (useDora && !isNull("megatron_config")) {
            throw error("use_dora", "is not supported together with 'megatron_config'", true);
        }
        if ("loftq".equals(initLoraWeights.name()) && !truthy(raw("loftq_config"))) {
            throw error("loftq_config", "must be specified when 'init_lora_weights' is 'loftq'",
                    raw("loftq_config"));
        }
    }

    private static boolean truthy(JsonNode v) {
        if (v == null || v.isNull()) {
            return false;
        }
        if (v.isContainerNode()) {
            return !v.isEmpty();
        }
        if (v.isNumber()) {
            return v.doubleValue() != 0.0;
        }
        if (v.isTextual()) {
            return !v.textValue().isEmpty();
        }
        return !v.isBoolean() || v.booleanValue();
    }

    private List<Integer> decodeLayersToTransform() {
        JsonNode v = raw("layers_to_transform");
        if (v.isIntegralNumber() && v.canConvertToInt()) {
            return List.of(v.intValue());
        }
        if (v.isNull() || v.isArray()) {
            try {
                return optIntList("layers_to_transform");
            } catch (PeftConfigException e) {
                // fall through to the message that names both accepted forms
            }
        }
        throw error("layers_to_transform", "must be an integer, a list of integers or null", v);
    }

    private List<String> decodeLayersPattern() {
        JsonNode v = raw("layers_pattern");
        if (v.isTextual()) {
            return List.of(v.textValue());
        }
        if (v.isNull() || v.isArray()) {
            try {
                return optStringList("layers_pattern");
            } catch (PeftConfigException e) {
                // fall through
            }
        }
        throw error("layers_pattern", "must be a string, a list of strings or null", v);
    }

    private Map<String, Number> decodeAlphaPattern() {
        JsonNode v = raw("alpha_pattern");
        if (v.isNull()) {
            return Map.of();
        }
        if (!v.isObject()) {
            throw error("alpha_pattern", "must be an object mapping patterns to numbers", v);
        }
        Map<String, Number> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : v.properties()) {
            if (!e.getValue().isNumber()) {
                throw error("alpha_pattern", "must map patterns to numbers; entry '" + e.getKey() + "'",
                        e.getValue());
            }
            out.put(e.getKey(), e.getValue().numberValue());
        }
        return Collections.unmodifiableMap(out);
    }

    // ------------------------------------------------------------------ getters

    /** LoRA rank (default 8). */
    public int r() {
        return r;
    }

    /** Modules to adapt, or null (then peft uses the model-type default). */
    public TargetModules targetModules() {
        return targetModules;
    }

    /** Modules never to adapt, or null. */
    public TargetModules excludeModules() {
        return excludeModules;
    }

    /** Scaling numerator with its JSON number type (Integer or Double). */
    public Number loraAlpha() {
        return loraAlpha;
    }

    public double loraAlphaValue() {
        return loraAlpha.doubleValue();
    }

    public double loraDropout() {
        return loraDropout;
    }

    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    public Bias bias() {
        return bias;
    }

    public boolean useRslora() {
        return useRslora;
    }

    /** Extra modules trained in full and saved, or null. */
    public List<String> modulesToSave() {
        return modulesToSave;
    }

    public InitLoraWeights initLoraWeights() {
        return initLoraWeights;
    }

    /** Layer indices to adapt (a bare int in JSON gives a one-element list), or null for all layers. */
    public List<Integer> layersToTransform() {
        return layersToTransform;
    }

    /** Names of the layer ModuleList (a bare string in JSON gives a one-element list), or null. */
    public List<String> layersPattern() {
        return layersPattern;
    }

    /** Per-module alpha overrides, in JSON order; never null. */
    public Map<String, Number> alphaPattern() {
        return alphaPattern;
    }

    public boolean useDora() {
        return useDora;
    }

    public boolean loraBias() {
        return loraBias;
    }

    /** Parameter names to adapt directly (e.g. MoE experts), or null. */
    public List<String> targetParameters() {
        return targetParameters;
    }

    public boolean useQalora() {
        return useQalora;
    }

    public int qaloraGroupSize() {
        return qaloraGroupSize;
    }

    public boolean ensureWeightTying() {
        return ensureWeightTying;
    }

    public String megatronCore() {
        return megatronCore;
    }

    /** {@code alpha / r}, or {@code alpha / sqrt(r)} with rsLoRA — for the default rank and alpha. */
    public double scaling() {
        return useRslora ? loraAlphaValue() / Math.sqrt(r) : loraAlphaValue() / r;
    }

    // fields peft4j keeps verbatim (returned as copies; JSON null when unset)

    public JsonNode megatronConfig() {
        return rawCopy("megatron_config");
    }

    public JsonNode loftqConfig() {
        return rawCopy("loftq_config");
    }

    public JsonNode evaConfig() {
        return rawCopy("eva_config");
    }

    public JsonNode cordaConfig() {
        return rawCopy("corda_config");
    }

    public JsonNode loraGaConfig() {
        return rawCopy("lora_ga_config");
    }

    /** {@code lora_ga_config} parsed (validated when the config is built), or null when unset. */
    public LoraGAConfig loraGa() {
        return loraGa;
    }

    public JsonNode veloraConfig() {
        return rawCopy("velora_config");
    }

    public JsonNode aloraInvocationTokens() {
        return rawCopy("alora_invocation_tokens");
    }

    public JsonNode monteCloraConfig() {
        return rawCopy("monteclora_config");
    }

    public JsonNode layerReplication() {
        return rawCopy("layer_replication");
    }

    public JsonNode trainableTokenIndices() {
        return rawCopy("trainable_token_indices");
    }

    public JsonNode useBdlora() {
        return rawCopy("use_bdlora");
    }

    public JsonNode arrowConfig() {
        return rawCopy("arrow_config");
    }

    public JsonNode kasaConfig() {
        return rawCopy("kasa_config");
    }

    // ------------------------------------------------------------------ builder

    /** Setters for every LoRA field. */
    public abstract static class LoraBuilderBase<C extends AbstractLoraConfig, B extends LoraBuilderBase<C, B>>
            extends AbstractBuilder<C, B> {

        protected LoraBuilderBase(ConfigSchema schema) {
            super(schema);
        }

        protected LoraBuilderBase(ConfigSchema schema, PeftConfig from) {
            super(schema, from);
        }

        public B r(int r) {
            return setObject("r", r);
        }

        /** List form of target_modules. */
        public B targetModules(String... names) {
            return targetModules(TargetModules.of(names));
        }

        public B targetModules(Collection<String> names) {
            return targetModules(names == null ? null : TargetModules.of(names));
        }

        public B targetModules(TargetModules targetModules) {
            return set("target_modules", targetModules == null ? null : targetModules.toJsonNode());
        }

        public B excludeModules(String... names) {
            return excludeModules(TargetModules.of(names));
        }

        public B excludeModules(TargetModules excludeModules) {
            return set("exclude_modules", excludeModules == null ? null : excludeModules.toJsonNode());
        }

        /** Integer values are written as JSON ints, floating-point values as floats (16 vs 16.0). */
        public B loraAlpha(Number loraAlpha) {
            return setObject("lora_alpha", loraAlpha);
        }

        public B loraDropout(double loraDropout) {
            return setObject("lora_dropout", loraDropout);
        }

        public B fanInFanOut(boolean fanInFanOut) {
            return setObject("fan_in_fan_out", fanInFanOut);
        }

        public B bias(Bias bias) {
            return setObject("bias", bias == null ? null : bias.value());
        }

        public B useRslora(boolean useRslora) {
            return setObject("use_rslora", useRslora);
        }

        public B modulesToSave(String... modules) {
            return modulesToSave(Arrays.asList(modules));
        }

        public B modulesToSave(List<String> modules) {
            return setObject("modules_to_save", modules);
        }

        public B initLoraWeights(boolean init) {
            return setObject("init_lora_weights", init);
        }

        /** A named scheme such as "gaussian" or "pissa_niter_4"; validated in {@link #build()}. */
        public B initLoraWeights(String init) {
            return setObject("init_lora_weights", init);
        }

        public B initLoraWeights(InitLoraWeights init) {
            return set("init_lora_weights", init == null ? null : init.toJsonNode());
        }

        /** A single layer, written as a bare int like peft does when given an int. */
        public B layersToTransform(int layer) {
            return setObject("layers_to_transform", layer);
        }

        public B layersToTransform(List<Integer> layers) {
            return setObject("layers_to_transform", layers);
        }

        /** A single name, written as a bare string. */
        public B layersPattern(String pattern) {
            return setObject("layers_pattern", pattern);
        }

        public B layersPattern(List<String> patterns) {
            return setObject("layers_pattern", patterns);
        }

        /** Insertion order is kept. */
        public B alphaPattern(Map<String, ? extends Number> alphaPattern) {
            return setObject("alpha_pattern", alphaPattern == null ? Map.of() : new LinkedHashMap<>(alphaPattern));
        }

        public B useDora(boolean useDora) {
            return setObject("use_dora", useDora);
        }

        public B loraBias(boolean loraBias) {
            return setObject("lora_bias", loraBias);
        }

        public B targetParameters(String... names) {
            return targetParameters(Arrays.asList(names));
        }

        public B targetParameters(List<String> names) {
            return setObject("target_parameters", names);
        }

        public B useQalora(boolean useQalora) {
            return setObject("use_qalora", useQalora);
        }

        public B qaloraGroupSize(int size) {
            return setObject("qalora_group_size", size);
        }

        public B ensureWeightTying(boolean ensureWeightTying) {
            return setObject("ensure_weight_tying", ensureWeightTying);
        }

        public B megatronCore(String megatronCore) {
            return setObject("megatron_core", megatronCore);
        }

        public B megatronConfig(JsonNode v) {
            return set("megatron_config", copy(v));
        }

        public B loftqConfig(JsonNode v) {
            return set("loftq_config", v == null ? PythonJson.NODES.objectNode() : v.deepCopy());
        }

        public B evaConfig(JsonNode v) {
            return set("eva_config", copy(v));
        }

        public B cordaConfig(JsonNode v) {
            return set("corda_config", copy(v));
        }

        public B loraGaConfig(JsonNode v) {
            return set("lora_ga_config", copy(v));
        }

        /** LoRA-GA settings, used with {@code initLoraWeights("lora_ga")}. */
        public B loraGaConfig(LoraGAConfig v) {
            return set("lora_ga_config", v == null ? null : v.toJsonNode());
        }

        public B veloraConfig(JsonNode v) {
            return set("velora_config", copy(v));
        }

        public B aloraInvocationTokens(List<Integer> tokens) {
            return setObject("alora_invocation_tokens", tokens);
        }

        public B monteCloraConfig(JsonNode v) {
            return set("monteclora_config", copy(v));
        }

        /** List of {@code [start, end)} pairs. */
        public B layerReplication(List<int[]> ranges) {
            if (ranges == null) {
                return set("layer_replication", null);
            }
            ArrayNode arr = PythonJson.NODES.arrayNode();
            for (int[] range : ranges) {
                ArrayNode pair = arr.addArray();
                for (int i : range) {
                    pair.add(i);
                }
            }
            return set("layer_replication", arr);
        }

        public B trainableTokenIndices(JsonNode v) {
            return set("trainable_token_indices", copy(v));
        }

        public B useBdlora(JsonNode v) {
            return set("use_bdlora", copy(v));
        }

        public B arrowConfig(JsonNode v) {
            return set("arrow_config", copy(v));
        }

        public B kasaConfig(JsonNode v) {
            return set("kasa_config", copy(v));
        }

        static JsonNode copy(JsonNode v) {
            return v == null ? null : v.deepCopy();
        }
    }
}
