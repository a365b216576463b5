package io.peft4j.tuners;

import java.util.List;
import java.util.Map;

/** peft's default target modules by {@code config.json} {@code model_type}, used when a config names none. */
public final class TargetModuleDefaults {
    private TargetModuleDefaults() {}

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
}
