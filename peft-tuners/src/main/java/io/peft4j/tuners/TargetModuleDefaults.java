package io.peft4j.tuners;

import java.util.List;
import java.util.Map;

/** peft's default target modules by {@code config.json} {@code model_type}, used when a config names none. */
public final class TargetModuleDefaults {
    private TargetModuleDefaults() {}

    /**
     * The entry of {@code table} for the model's {@code model_type}, or an error asking for {@code field}
     * (peft's "Please specify `target_modules` in `peft_config`").
     */
    public static io.peft4j.config.TargetModules lookup(Map<String, List<String>> table, io.peft4j.nn.Module model,
                                                        String field, String what) {
        String type = model instanceof io.peft4j.nn.model.PreTrainedModel p ? p.config().modelType() : null;
        List<String> names = type == null ? null : table.get(type);
        if (names == null) {
            throw new IllegalArgumentException("Please specify `" + field + "` in `peft_config`"
                    + (type == null ? "" : " (no default " + what + " are known for model_type '" + type + "')"));
        }
        return io.peft4j.config.TargetModules.of(names.toArray(String[]::new));
    }

    /** {@code TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING}. */
    public static final Map<String, List<String>> LORA = Map.ofEntries(
            Map.entry("t5", List.of("q", "v")),
            Map.entry("mt5", List.of("q", "v")),
            Map.entry("bart", List.of("q_proj", "v_proj")),
            Map.entry("gpt2", List.of("c_attn")),
            Map.entry("bloom", List.of("query_key_value")),
            Map.entry("blip-2", List.of("q", "v", "q_proj", "v_proj")),
            Map.entry("opt", List.of("q_proj", "v_proj")),
            Map.entry("gptj", List.of("q_proj", "v_proj")),
            Map.entry("gpt_neox", List.of("query_key_value")),
            Map.entry("gpt_neo", List.of("q_proj", "v_proj")),
            Map.entry("bert", List.of("query", "value")),
            Map.entry("roberta", List.of("query", "value")),
            Map.entry("xlm-roberta", List.of("query", "value")),
            Map.entry("electra", List.of("query", "value")),
            Map.entry("deberta-v2", List.of("query_proj", "value_proj")),
            Map.entry("deberta", List.of("in_proj")),
            Map.entry("layoutlm", List.of("query", "value")),
            Map.entry("llama", List.of("q_proj", "v_proj")),
            Map.entry("llama4", List.of("q_proj", "v_proj")),
            Map.entry("chatglm", List.of("query_key_value")),
            Map.entry("gpt_bigcode", List.of("c_attn")),
            Map.entry("mpt", List.of("Wqkv")),
            Map.entry("RefinedWebModel", List.of("query_key_value")),
            Map.entry("RefinedWeb", List.of("query_key_value")),
            Map.entry("falcon", List.of("query_key_value")),
            Map.entry("btlm", List.of("c_proj", "c_attn")),
            Map.entry("codegen", List.of("qkv_proj")),
            Map.entry("mistral", List.of("q_proj", "v_proj")),
            Map.entry("mixtral", List.of("q_proj", "v_proj")),
            Map.entry("stablelm", List.of("q_proj", "v_proj")),
            Map.entry("phi", List.of("q_proj", "v_proj", "fc1", "fc2")),
            Map.entry("gemma", List.of("q_proj", "v_proj")),
            Map.entry("gemma2", List.of("q_proj", "v_proj")),
            Map.entry("gemma3_text", List.of("q_proj", "v_proj")),
            Map.entry("qwen2", List.of("q_proj", "v_proj")),
            Map.entry("qwen3", List.of("q_proj", "v_proj")),
            Map.entry("nemotron_h", List.of("q_proj", "k_proj", "v_proj", "o_proj")),
            Map.entry("rwkv", List.of("key", "value", "receptance", "output")),
            Map.entry("rwkv7", List.of("r_proj", "k_proj", "v_proj", "o_proj", "key", "value")));

    /** {@code TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING}: wider than LoRA's for t5, mt5, bart, opt, roberta, deberta-v2. */
    public static final Map<String, List<String>> ADALORA = Map.ofEntries(
            Map.entry("t5", List.of("q", "k", "v", "o", "wi", "wo")),
            Map.entry("mt5", List.of("q", "k", "v", "o", "wi_0", "wi_1", "wo")),
            Map.entry("bart", List.of("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")),
            Map.entry("gpt2", List.of("c_attn")),
            Map.entry("bloom", List.of("query_key_value")),
            Map.entry("opt", List.of("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")),
            Map.entry("gptj", List.of("q_proj", "v_proj")),
            Map.entry("gpt_neox", List.of("query_key_value")),
            Map.entry("gpt_neo", List.of("q_proj", "v_proj")),
            Map.entry("llama", List.of("q_proj", "v_proj")),
            Map.entry("llama4", List.of("q_proj", "v_proj")),
            Map.entry("bert", List.of("query", "value")),
            Map.entry("roberta", List.of("query", "key", "value", "dense")),
            Map.entry("deberta-v2", List.of("query_proj", "key_proj", "value_proj", "dense")),
            Map.entry("gpt_bigcode", List.of("c_attn")),
            Map.entry("deberta", List.of("in_proj")),
            Map.entry("gemma", List.of("q_proj", "v_proj")),
            Map.entry("gemma2", List.of("q_proj", "v_proj")),
            Map.entry("gemma3_text", List.of("q_proj", "v_proj")),
            Map.entry("qwen2", List.of("q_proj", "v_proj")),
            Map.entry("qwen3", List.of("q_proj", "v_proj")),
            Map.entry("nemotron_h", List.of("q_proj", "k_proj", "v_proj", "o_proj")));

    /** {@code TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING}. */
    public static final Map<String, List<String>> IA3 = Map.ofEntries(
            Map.entry("t5", List.of("k", "v", "wo")),
            Map.entry("mt5", List.of("k", "v", "wi_1")),
            Map.entry("gpt2", List.of("c_attn", "mlp.c_proj")),
            Map.entry("bloom", List.of("query_key_value", "mlp.dense_4h_to_h")),
            Map.entry("roberta", List.of("key", "value", "output.dense")),
            Map.entry("opt", List.of("q_proj", "k_proj", "fc2")),
            Map.entry("gptj", List.of("q_proj", "v_proj", "fc_out")),
            Map.entry("gpt_neox", List.of("query_key_value", "dense_4h_to_h")),
            Map.entry("gpt_neo", List.of("q_proj", "v_proj", "c_proj")),
            Map.entry("bart", List.of("q_proj", "v_proj", "fc2")),
            Map.entry("gpt_bigcode", List.of("c_attn", "mlp.c_proj")),
            Map.entry("llama", List.of("k_proj", "v_proj", "down_proj")),
            Map.entry("llama4", List.of("q_proj", "v_proj", "down_proj")),
            Map.entry("mistral", List.of("k_proj", "v_proj", "down_proj")),
            Map.entry("mixtral", List.of("k_proj", "v_proj", "w2")),
            Map.entry("bert", List.of("key", "value", "output.dense")),
            Map.entry("deberta-v2", List.of("key_proj", "value_proj", "output.dense")),
            Map.entry("deberta", List.of("in_proj", "output.dense")),
            Map.entry("RefinedWebModel", List.of("query_key_value", "dense_4h_to_h")),
            Map.entry("RefinedWeb", List.of("query_key_value", "dense_4h_to_h")),
            Map.entry("falcon", List.of("query_key_value", "dense_4h_to_h")),
            Map.entry("phi", List.of("q_proj", "v_proj", "fc2")),
            Map.entry("gemma", List.of("q_proj", "v_proj", "down_proj")),
            Map.entry("gemma2", List.of("q_proj", "v_proj", "down_proj")),
            Map.entry("gemma3_text", List.of("q_proj", "v_proj", "down_proj")),
            Map.entry("qwen2", List.of("q_proj", "v_proj", "down_proj")),
            Map.entry("qwen3", List.of("q_proj", "v_proj", "down_proj")));

    /** {@code TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING}. */
    public static final Map<String, List<String>> IA3_FEEDFORWARD = Map.ofEntries(
            Map.entry("t5", List.of("wo")),
            Map.entry("mt5", List.of()),
            Map.entry("gpt2", List.of("mlp.c_proj")),
            Map.entry("bloom", List.of("mlp.dense_4h_to_h")),
            Map.entry("roberta", List.of("output.dense")),
            Map.entry("opt", List.of("fc2")),
            Map.entry("gptj", List.of("fc_out")),
            Map.entry("gpt_neox", List.of("dense_4h_to_h")),
            Map.entry("gpt_neo", List.of("c_proj")),
            Map.entry("bart", List.of("fc2")),
            Map.entry("gpt_bigcode", List.of("mlp.c_proj")),
            Map.entry("llama", List.of("down_proj")),
            Map.entry("llama4", List.of("down_proj")),
            Map.entry("mistral", List.of("down_proj")),
            Map.entry("mixtral", List.of("w2")),
            Map.entry("bert", List.of("output.dense")),
            Map.entry("deberta-v2", List.of("output.dense")),
            Map.entry("deberta", List.of("output.dense")),
            Map.entry("RefinedWebModel", List.of("dense_4h_to_h")),
            Map.entry("RefinedWeb", List.of("dense_4h_to_h")),
            Map.entry("falcon", List.of("dense_4h_to_h")),
            Map.entry("phi", List.of("fc2")),
            Map.entry("gemma", List.of("down_proj")),
            Map.entry("gemma2", List.of("down_proj")),
            Map.entry("gemma3_text", List.of("down_proj")),
            Map.entry("qwen2", List.of("down_proj")),
            Map.entry("qwen3", List.of("down_proj")));
}
