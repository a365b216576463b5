package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LoraConfigBuilderTest {
    private static final ObjectMapper M = new ObjectMapper();

    private static JsonNode referenceTree(String name) throws Exception {
        return M.readTree(SharedData.read(SharedData.resourceCase(name).resolve("adapter_config.json")));
    }

    private static List<String> keys(JsonNode node) {
        List<String> out = new ArrayList<>();
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            out.add(it.next());
        }
        out.sort(null);
        return out;
    }

    @Test
    void freshConfigWritesPeft0132KeysAndDefaults() throws Exception {
        JsonNode expected = referenceTree("llama-lora");
        JsonNode actual = M.readTree(LoraConfig.builder().targetModules("q_proj", "v_proj").build().toJson());
        assertThat(keys(actual)).isEqualTo(keys(expected));
        Set<String> differing = Set.of("target_modules", "lora_alpha", "base_model_name_or_path", "task_type",
                "inference_mode");
        for (String key : keys(expected)) {
            if (!differing.contains(key)) {
                assertThat(actual.get(key)).as(key).isEqualTo(expected.get(key));
            }
        }
        assertThat(actual.get("lora_alpha").isInt()).isTrue();
        assertThat(actual.get("lora_alpha").intValue()).isEqualTo(8);
        assertThat(actual.get("base_model_name_or_path").isNull()).isTrue();
        assertThat(actual.get("task_type").isNull()).isTrue();
        assertThat(actual.get("inference_mode").booleanValue()).isFalse();
        assertThat(actual.get("target_modules").toString()).isEqualTo("[\"q_proj\",\"v_proj\"]");
    }

    @Test
    void savedJavaConfigIsByteIdenticalToPeftOutput(@TempDir Path tmp) {
        LoraConfig c = LoraConfig.builder().targetModules("v_proj", "q_proj").loraAlpha(16)
                .taskType(TaskType.CAUSAL_LM).baseModelNameOrPath("models/llama").build();
        c.save(tmp);
        assertThat(SharedData.read(tmp.resolve("adapter_config.json")))
                .isEqualTo(SharedData.read(SharedData.resourceCase("llama-lora").resolve("adapter_config.json")));
        assertThat(c.inferenceMode()).isFalse();
    }

    @Test
    void otherJavaConfigsMatchPeftOutput(@TempDir Path tmp) throws Exception {
        AdaLoraConfig ada = AdaLoraConfig.builder().targetModules("q_proj", "v_proj").loraAlpha(16)
                .taskType(TaskType.CAUSAL_LM).baseModelNameOrPath("models/llama").build();
        assertSaved(ada, tmp.resolve("ada"), "llama-adalora");
        IA3Config ia3 = IA3Config.builder().targetModules("v_proj", "k_proj", "down_proj")
                .feedforwardModules("down_proj").taskType(TaskType.CAUSAL_LM).baseModelNameOrPath("models/llama")
                .build();
        assertSaved(ia3, tmp.resolve("ia3"), "llama-ia3");
        PromptTuningConfig prompt = PromptTuningConfig.builder().numVirtualTokens(6).tokenDim(64).numLayers(2)
                .numAttentionHeads(4).numTransformerSubmodules(1).taskType(TaskType.CAUSAL_LM)
                .baseModelNameOrPath("models/llama").build();
        assertSaved(prompt, tmp.resolve("prompt"), "llama-prompt");
        PrefixTuningConfig prefix = PrefixTuningConfig.builder().numVirtualTokens(6).tokenDim(32).numLayers(2)
                .numAttentionHeads(2).numTransformerSubmodules(1).encoderHiddenSize(32).prefixProjection(true)
                .taskType(TaskType.CAUSAL_LM).baseModelNameOrPath("models/llama").build();
        assertSaved(prefix, tmp.resolve("prefix"), "llama-prefix-proj");
        PromptEncoderConfig pe = PromptEncoderConfig.builder().numVirtualTokens(6).tokenDim(64).numLayers(2)
                .numAttentionHeads(4).numTransformerSubmodules(1).encoderHiddenSize(32)
                .taskType(TaskType.CAUSAL_LM).baseModelNameOrPath("models/llama").build();
        assertSaved(pe, tmp.resolve("pe"), "llama-ptuning");
    }

    private static void assertSaved(PeftConfig c, Path dir, String reference) {
        c.save(dir);
        assertThat(SharedData.read(dir.resolve("adapter_config.json")))
                .isEqualTo(SharedData.read(SharedData.resourceCase(reference).resolve("adapter_config.json")));
    }

    @Test
    void typedDefaultsArePeftDefaults() {
        LoraConfig c = LoraConfig.builder().build();
        assertThat(c.peftType()).isEqualTo(PeftType.LORA);
        assertThat(c.r()).isEqualTo(8);
        assertThat(c.loraAlpha()).isEqualTo(8);
        assertThat(c.loraDropout()).isEqualTo(0.0);
        assertThat(c.targetModules()).isNull();
        assertThat(c.excludeModules()).isNull();
        assertThat(c.fanInFanOut()).isFalse();
        assertThat(c.bias()).isEqualTo(LoraConfig.Bias.NONE);
        assertThat(c.useRslora()).isFalse();
        assertThat(c.modulesToSave()).isNull();
        assertThat(c.initLoraWeights().isTrue()).isTrue();
        assertThat(c.layersToTransform()).isNull();
        assertThat(c.layersPattern()).isNull();
        assertThat(c.rankPattern()).isEmpty();
        assertThat(c.alphaPattern()).isEmpty();
        assertThat(c.useDora()).isFalse();
        assertThat(c.loraBias()).isFalse();
        assertThat(c.targetParameters()).isNull();
        assertThat(c.useQalora()).isFalse();
        assertThat(c.qaloraGroupSize()).isEqualTo(16);
        assertThat(c.ensureWeightTying()).isFalse();
        assertThat(c.megatronCore()).isEqualTo("megatron.core");
        assertThat(c.loftqConfig().isObject() && c.loftqConfig().isEmpty()).isTrue();
        assertThat(c.evaConfig().isNull()).isTrue();
        assertThat(c.kasaConfig().isNull()).isTrue();
        assertThat(c.taskType()).isNull();
        assertThat(c.inferenceMode()).isFalse();
        assertThat(c.scaling()).isEqualTo(1.0);
        AdaLoraConfig a = AdaLoraConfig.builder().build();
        assertThat(a.peftType()).isEqualTo(PeftType.ADALORA);
        assertThat(a.initR()).isEqualTo(12);
        assertThat(a.targetR()).isEqualTo(8);
        assertThat(a.deltaT()).isEqualTo(1);
        assertThat(a.beta2()).isEqualTo(0.85);
        assertThat(a.totalStep()).isNull();
        assertThat(a.rankPattern()).isNull();
        PromptEncoderConfig pe = PromptEncoderConfig.builder().build();
        assertThat(pe.encoderReparameterizationType()).isEqualTo(PromptEncoderReparameterizationType.MLP);
        assertThat(pe.encoderNumLayers()).isEqualTo(2);
        assertThat(PromptTuningConfig.builder().build().promptTuningInit()).isEqualTo(PromptTuningInit.RANDOM);
        assertThat(PrefixTuningConfig.builder().build().prefixProjection()).isFalse();
        assertThat(IA3Config.builder().build().initIa3Weights()).isTrue();
    }

    @Test
    void builderExampleAndScaling() {
        LoraConfig c = LoraConfig.builder().r(16).loraAlpha(32).targetModules("q_proj", "v_proj")
                .taskType(TaskType.CAUSAL_LM).build();
        assertThat(c.r()).isEqualTo(16);
        assertThat(c.scaling()).isEqualTo(2.0);
        assertThat(c.toBuilder().useRslora(true).build().scaling()).isEqualTo(8.0);
        assertThat(c.targetModules().names()).containsExactly("q_proj", "v_proj");
    }

    @Test
    void newerFieldsAreWrittenOnlyWhenNonDefault() throws Exception {
        JsonNode plain = M.readTree(LoraConfig.builder().useQalora(false).loraBias(false).build().toJson());
        assertThat(plain.has("use_qalora")).isFalse();
        assertThat(plain.has("lora_bias")).isFalse();
        assertThat(plain.has("peft_version")).isFalse();
        JsonNode set = M.readTree(LoraConfig.builder().loraBias(true).excludeModules("lm_head")
                .targetParameters("experts.weight").ensureWeightTying(true).build().toJson());
        assertThat(set.get("lora_bias").booleanValue()).isTrue();
        assertThat(set.get("exclude_modules").toString()).isEqualTo("[\"lm_head\"]");
        assertThat(set.get("target_parameters").toString()).isEqualTo("[\"experts.weight\"]");
        assertThat(set.get("ensure_weight_tying").booleanValue()).isTrue();
        assertThat(set.has("use_qalora")).isFalse();
    }

    @Test
    void numberTypesAndBareFormsRoundTrip() throws Exception {
        LoraConfig floatAlpha = LoraConfig.builder().loraAlpha(16.0).build();
        assertThat(floatAlpha.toJson()).contains("\"lora_alpha\": 16.0,");
        assertThat(floatAlpha.loraAlphaValue()).isEqualTo(16.0);
        LoraConfig intAlpha = LoraConfig.builder().loraAlpha(16).build();
        assertThat(intAlpha.toJson()).contains("\"lora_alpha\": 16,");

        String json = LoraConfig.builder().loraAlpha(16.0).layersToTransform(3).layersPattern("layers")
                .loraDropout(1e-5).build().toJson();
        assertThat(json).contains("\"layers_to_transform\": 3,").contains("\"layers_pattern\": \"layers\",")
                .contains("\"lora_dropout\": 1e-05,");
        LoraConfig back = (LoraConfig) PeftConfig.fromJson(json, "mem");
        assertThat(back.layersToTransform()).containsExactly(3);
        assertThat(back.layersPattern()).containsExactly("layers");
        assertThat(back.loraAlpha()).isInstanceOf(Double.class);
        assertThat(back.toJson()).isEqualTo(json);

        String lists = LoraConfig.builder().layersToTransform(List.of(0, 2)).layersPattern(List.of("h")).build()
                .toJson();
        assertThat(lists).contains("\"layers_to_transform\": [\n    0,\n    2\n  ],")
                .contains("\"layers_pattern\": [\n    \"h\"\n  ],");
    }

    @Test
    void patternsKeepInsertionOrder() {
        Map<String, Integer> ranks = new LinkedHashMap<>();
        ranks.put("z_proj", 4);
        ranks.put("a_proj", 2);
        Map<String, Number> alphas = new LinkedHashMap<>();
        alphas.put("z_proj", 32);
        alphas.put("a_proj", 0.5);
        LoraConfig c = LoraConfig.builder().rankPattern(ranks).alphaPattern(alphas).build();
        assertThat(new ArrayList<>(c.rankPattern().keySet())).containsExactly("z_proj", "a_proj");
        assertThat(new ArrayList<>(c.alphaPattern().keySet())).containsExactly("z_proj", "a_proj");
        assertThat(c.alphaPattern().get("a_proj")).isEqualTo(0.5);
        LoraConfig fromJson = (LoraConfig) PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"rank_pattern\": {\"z\": 1, \"b\": 2, \"m\": 3}}", "mem");
        assertThat(new ArrayList<>(fromJson.rankPattern().keySet())).containsExactly("z", "b", "m");
    }

    @Test
    void targetModulesForms() throws Exception {
        assertThat(TargetModules.of("a", "b", "a").names()).containsExactly("a", "b");
        assertThat(TargetModules.allLinear().isAllLinear()).isTrue();
        assertThat(TargetModules.regex("ALL-LINEAR").isAllLinear()).isTrue();
        assertThat(TargetModules.of("all-linear").isAllLinear()).isFalse();
        assertThat(TargetModules.of("all-linear").isRegex()).isFalse();
        assertThat(TargetModules.regex(".*proj").regex()).isEqualTo(".*proj");
        String json = LoraConfig.builder().targetModules(TargetModules.regex(".*\\.q_proj")).build().toJson();
        assertThat(json).contains("\"target_modules\": \".*\\\\.q_proj\",");
        LoraConfig back = (LoraConfig) PeftConfig.fromJson(json, "mem");
        assertThat(back.targetModules().isRegex()).isTrue();
        assertThat(back.targetModules().regex()).isEqualTo(".*\\.q_proj");
        LoraConfig all = (LoraConfig) PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"target_modules\": \"all-linear\"}", "mem");
        assertThat(all.targetModules().isAllLinear()).isTrue();
    }

    @Test
    void initLoraWeightsForms() {
        assertThat(LoraConfig.builder().initLoraWeights("pissa_niter_16").build().initLoraWeights().pissaNiter())
                .isEqualTo(16);
        assertThat(LoraConfig.builder().initLoraWeights(false).build().initLoraWeights().isFalse()).isTrue();
        for (String name : List.of("gaussian", "eva", "olora", "pissa", "corda", "orthogonal", "mica", "lora_ga")) {
            assertThat(LoraConfig.builder().initLoraWeights(name).build().initLoraWeights().name()).isEqualTo(name);
        }
        assertThatThrownBy(() -> LoraConfig.builder().initLoraWeights("pissa_niter_").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'init_lora_weights'");
    }

    @Test
    void loraGaConfigWritesPeftsObjectAndRoundTrips() {
        LoraConfig c = LoraConfig.builder().initLoraWeights("lora_ga")
                .loraGaConfig(new LoraGAConfig("A2rBr", "gd_scale", 8)).build();
        assertThat(c.toJson()).contains("\"lora_ga_config\": {\n    \"direction\": \"A2rBr\",\n    "
                + "\"scale\": \"gd_scale\",\n    \"stable_gamma\": 8\n  },");
        LoraConfig back = (LoraConfig) PeftConfig.fromJson(c.toJson(), "mem");
        assertThat(back.toJson()).isEqualTo(c.toJson());
        assertThat(back.loraGa()).isEqualTo(new LoraGAConfig("A2rBr", "gd_scale", 8));
        // peft's defaults fill missing keys; no lora_ga_config at all gives null
        LoraConfig partial = (LoraConfig) PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"lora_ga_config\": {\"scale\": \"unit\"}}", "mem");
        assertThat(partial.loraGa().direction()).isEqualTo("ArB2r");
        assertThat(partial.loraGa().stableGamma()).isEqualTo(16.0);
        assertThat(LoraConfig.builder().build().loraGa()).isNull();
    }

    @Test
    void invalidLoraGaConfigNamesTheFieldAndTheAllowedValues() {
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"lora_ga_config\": {\"direction\": \"BrAr\"}}", "cfg.json"))
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("cfg.json").hasMessageContaining("'lora_ga_config'")
                .hasMessageContaining("[ArBr, A2rBr, ArB2r, random]").hasMessageContaining("'BrAr'");
        assertThatThrownBy(() -> new LoraGAConfig("ArB2r", "stable", 0))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("stable_gamma must be positive");
        assertThatThrownBy(() -> new LoraGAConfig("ArB2r", "weightS", 16))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("scale must be one of");
    }

    @Test
    void toBuilderKeepsFileKeysAndUnknownFields() throws Exception {
        String json = "{\n  \"peft_type\": \"LORA\",\n  \"r\": 4,\n  \"zzz_extra\": [\n    1\n  ]\n}";
        LoraConfig c = (LoraConfig) PeftConfig.fromJson(json, "mem");
        assertThat(c.toJson()).isEqualTo(json);
        LoraConfig changed = c.toBuilder().r(16).useDora(true).build();
        assertThat(changed.toJson()).isEqualTo(
                "{\n  \"peft_type\": \"LORA\",\n  \"r\": 16,\n  \"use_dora\": true,\n  \"zzz_extra\": [\n    1\n  ]\n}");
        assertThat(c.r()).isEqualTo(4);
        assertThat(changed).isNotEqualTo(c);
        assertThat(c.toBuilder().build()).isEqualTo(c);
    }

    @Test
    void saveForcesInferenceModeAndLeavesNoTempFiles(@TempDir Path tmp) throws Exception {
        LoraConfig c = LoraConfig.builder().build();
        c.save(tmp);
        c.save(tmp); // overwrite must work too
        JsonNode saved = M.readTree(SharedData.read(tmp.resolve("adapter_config.json")));
        assertThat(saved.get("inference_mode").booleanValue()).isTrue();
        assertThat(M.readTree(c.toJson()).get("inference_mode").booleanValue()).isFalse();
        try (var s = Files.list(tmp)) {
            assertThat(s.map(p -> p.getFileName().toString())).containsExactly("adapter_config.json");
        }
        assertThat(SharedData.read(tmp.resolve("adapter_config.json"))).doesNotEndWith("\n").endsWith("}");
    }
}
