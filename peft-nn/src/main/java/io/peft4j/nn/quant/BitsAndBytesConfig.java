package io.peft4j.nn.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;

/**
 * 4-bit loading settings, transformers' {@code BitsAndBytesConfig} for {@code load_in_4bit}: quant type, double
 * quantisation, block size and the modules that stay in full precision ({@code llm_int8_skip_modules}). Defaults
 * are the QLoRA recipe (NF4, double quantisation, blocks of 64); transformers' own defaults are FP4 without double
 * quantisation. Embeddings and norms are never quantised (only Linear layers are); {@code skipModules} null means
 * the output heads {@code lm_head}, {@code score} and {@code classifier}, as transformers keeps the output layer.
 *
 * @param quantType    {@code "nf4"} or {@code "fp4"}
 * @param doubleQuant  quantise the absmax constants too (8-bit, blocks of 256)
 * @param blocksize    elements per absmax block (bitsandbytes: 64)
 * @param skipModules  module names kept in float32 (exact name, dotted suffix or path prefix); null = default
 */
public record BitsAndBytesConfig(String quantType, boolean doubleQuant, int blocksize, List<String> skipModules) {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The modules transformers keeps in full precision by default (the output layer). */
    public static final List<String> DEFAULT_SKIP_MODULES = List.of("lm_head", "score", "classifier");

    public BitsAndBytesConfig {
        QuantCodes.fourBit(quantType); // validates the name
        Quantizer.checkBlocksize(blocksize, "BitsAndBytesConfig");
        skipModules = skipModules == null ? null : List.copyOf(skipModules);
    }

    /** NF4, double quantisation, blocks of 64, default skipped modules: the QLoRA recipe. */
    public static BitsAndBytesConfig nf4() {
        return new BitsAndBytesConfig("nf4", true, 64, null);
    }

    public BitsAndBytesConfig withSkipModules(List<String> modules) {
        return new BitsAndBytesConfig(quantType, doubleQuant, blocksize, modules);
    }

    public BitsAndBytesConfig withDoubleQuant(boolean on) {
        return new BitsAndBytesConfig(quantType, on, blocksize, skipModules);
    }

    public BitsAndBytesConfig withQuantType(String type) {
        return new BitsAndBytesConfig(type, doubleQuant, blocksize, skipModules);
    }

    /** The modules kept in full precision. */
    public List<String> effectiveSkipModules() {
        return skipModules == null ? DEFAULT_SKIP_MODULES : skipModules;
    }

    /** True when the module at {@code path} stays in full precision. */
    public boolean skips(String path) {
        for (String k : effectiveSkipModules()) {
            if (path.equals(k) || path.endsWith("." + k) || path.startsWith(k + ".") || path.contains("." + k + ".")) {
                return true;
            }
        }
        return false;
    }

    /**
     * The {@code quantization_config} object transformers writes into {@code config.json} for a 4-bit bitsandbytes
     * model (compute dtype float32: peft4j computes in float32).
     */
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("_load_in_4bit", true);
        o.put("_load_in_8bit", false);
        o.put("bnb_4bit_compute_dtype", "float32");
        o.put("bnb_4bit_quant_storage", "uint8");
        o.put("bnb_4bit_quant_type", quantType);
        o.put("bnb_4bit_use_double_quant", doubleQuant);
        o.put("llm_int8_enable_fp32_cpu_offload", false);
        o.put("llm_int8_has_fp16_weight", false);
        if (skipModules == null) {
            o.putNull("llm_int8_skip_modules");
        } else {
            ArrayNode a = o.putArray("llm_int8_skip_modules");
            skipModules.forEach(a::add);
        }
        o.put("llm_int8_threshold", 6.0);
        o.put("load_in_4bit", true);
        o.put("load_in_8bit", false);
        o.put("quant_method", "bitsandbytes");
        return o;
    }

    /**
     * Reads a {@code quantization_config}; fails (naming {@code source}) unless it is bitsandbytes 4-bit. The block
     * size is not part of transformers' config (bitsandbytes always uses 64); the tensors' quant state gives it.
     */
    public static BitsAndBytesConfig fromJson(JsonNode q, String source) {
        String method = q.path("quant_method").asText("bitsandbytes");
        if (!method.equals("bitsandbytes")) {
            throw new IllegalArgumentException(source + ": quantization_config.quant_method \"" + method
                    + "\" is not supported (peft4j reads bitsandbytes 4-bit checkpoints)");
        }
        boolean fourBit = q.path("load_in_4bit").asBoolean(q.path("_load_in_4bit").asBoolean(false));
        if (!fourBit) {
            throw new IllegalArgumentException(source + ": quantization_config is not load_in_4bit (8-bit "
                    + "bitsandbytes checkpoints are not supported)");
        }
        String type = q.path("bnb_4bit_quant_type").asText("fp4");
        if (!type.equals("nf4") && !type.equals("fp4")) {
            throw new IllegalArgumentException(source + ": quantization_config.bnb_4bit_quant_type \"" + type
                    + "\" is not \"nf4\" or \"fp4\"");
        }
        List<String> skip = null;
        JsonNode s = q.get("llm_int8_skip_modules");
        if (s != null && s.isArray()) {
            skip = new ArrayList<>();
            for (JsonNode n : s) {
                skip.add(n.asText());
            }
        }
        return new BitsAndBytesConfig(type, q.path("bnb_4bit_use_double_quant").asBoolean(false), 64, skip);
    }
}
