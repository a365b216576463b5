package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Each rule of LoraConfig.__post_init__ (and friends): exception type, source and field in the message. */
class ValidationTest {

    @Test
    void rMustBePositive() {
        assertThatThrownBy(() -> LoraConfig.builder().r(0).build())
                .isExactlyInstanceOf(PeftConfigException.class)
                .hasMessage("LoraConfig: field 'r' must be > 0 but was 0");
        assertThatThrownBy(() -> LoraConfig.builder().r(-3).build()).hasMessageContaining("'r'");
    }

    @Test
    void loraAlphaMustBeANumber() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"lora_alpha\": \"16\"}", "x.json"))
                .isInstanceOf(PeftConfigException.class)
                .hasMessageStartingWith("x.json (LoraConfig): field 'lora_alpha'");
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"lora_alpha\": true}", "x.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'lora_alpha'");
    }

    @Test
    void loraDropoutInUnitInterval() {
        assertThatThrownBy(() -> LoraConfig.builder().loraDropout(1.0).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'lora_dropout'");
        assertThatThrownBy(() -> LoraConfig.builder().loraDropout(-0.1).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'lora_dropout'");
        assertThatCode(() -> LoraConfig.builder().loraDropout(0.999).build()).doesNotThrowAnyException();
    }

    @Test
    void unknownBiasListsAllowedValues() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"bias\": \"foo\"}", "a.json"))
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("'bias'")
                .hasMessageContaining("none").hasMessageContaining("all").hasMessageContaining("lora_only")
                .hasMessageContaining("foo");
        assertThatThrownBy(() -> LoraConfig.Bias.fromValue("foo"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'bias'");
        assertThatCode(() -> LoraConfig.builder().bias(LoraConfig.Bias.LORA_ONLY).build())
                .doesNotThrowAnyException();
    }

    @Test
    void regexTargetModulesForbidsLayerSelection() {
        assertThatThrownBy(() -> LoraConfig.builder().targetModules(TargetModules.regex(".*q_proj"))
                .layersToTransform(0).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'layers_to_transform'");
        assertThatThrownBy(() -> LoraConfig.builder().targetModules(TargetModules.regex(".*q_proj"))
                .layersPattern("layers").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'layers_pattern'");
        assertThatCode(() -> LoraConfig.builder().targetModules("q_proj").layersToTransform(List.of(0, 1))
                .layersPattern("layers").build()).doesNotThrowAnyException();
    }

    @Test
    void layersPatternNeedsLayersToTransform() {
        assertThatThrownBy(() -> LoraConfig.builder().layersPattern("layers").build())
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("'layers_pattern'").hasMessageContaining("layers_to_transform");
        assertThatThrownBy(() -> LoraConfig.builder().layersPattern("layers").layersToTransform(List.of()).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'layers_pattern'");
    }

    @Test
    void doraExcludesLoraBias() {
        assertThatThrownBy(() -> LoraConfig.builder().useDora(true).loraBias(true).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'lora_bias'")
                .hasMessageContaining("use_dora");
    }

    @Test
    void loraBiasNeedsBooleanInit() {
        assertThatThrownBy(() -> LoraConfig.builder().loraBias(true).initLoraWeights("gaussian").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'lora_bias'")
                .hasMessageContaining("init_lora_weights");
        assertThatCode(() -> LoraConfig.builder().loraBias(true).initLoraWeights(false).build())
                .doesNotThrowAnyException();
    }

    @Test
    void rankPatternEntriesMustBePositive() {
        assertThatThrownBy(() -> LoraConfig.builder().rankPattern(Map.of("q_proj", -1)).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'rank_pattern'")
                .hasMessageContaining("q_proj");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q\": \"4\"}}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'rank_pattern'");
    }

    @Test
    void unknownInitLoraWeightsListsAllowedValues() {
        assertThatThrownBy(() -> LoraConfig.builder().initLoraWeights("xavier").build())
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("'init_lora_weights'").hasMessageContaining("gaussian")
                .hasMessageContaining("pissa").hasMessageContaining("xavier");
        assertThatThrownBy(() -> InitLoraWeights.of("xavier"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'init_lora_weights'");
    }

    @Test
    void doraWithMegatronAndLoftqWithoutConfig() {
        assertThatThrownBy(() -> LoraConfig.builder().useDora(true)
                .megatronConfig(PythonJson.NODES.objectNode().put("tp", 2)).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'use_dora'");
        assertThatThrownBy(() -> LoraConfig.builder().initLoraWeights("loftq").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'loftq_config'");
        assertThatCode(() -> LoraConfig.builder().initLoraWeights("loftq")
                .loftqConfig(PythonJson.NODES.objectNode().put("loftq_bits", 4)).build())
                .doesNotThrowAnyException();
    }

    @Test
    void wrongJsonTypesNameTheField() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"r\": 8.5}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("f.json").hasMessageContaining("'r'");
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"use_dora\": \"yes\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'use_dora'");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"target_modules\": [\"q\", 1]}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'target_modules'");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"target_parameters\": \"experts\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'target_parameters'");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"layers_to_transform\": \"0\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'layers_to_transform'");
    }

    @Test
    void unknownTaskTypeListsAllowedValues() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LORA\", \"task_type\": \"CHAT\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'task_type'")
                .hasMessageContaining("CAUSAL_LM").hasMessageContaining("CHAT");
    }

    @Test
    void adaLoraRules() {
        assertThatThrownBy(() -> AdaLoraConfig.builder().useDora(true).build())
                .isInstanceOf(PeftConfigException.class).hasMessageStartingWith("AdaLoraConfig: field 'use_dora'");
        assertThatThrownBy(() -> AdaLoraConfig.builder().totalStep(0).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'total_step'");
        assertThatThrownBy(() -> AdaLoraConfig.builder().totalStep(10).tinit(5).tfinal(5).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'tinit'");
        assertThatThrownBy(() -> AdaLoraConfig.builder()
                .loftqConfig(PythonJson.NODES.objectNode().put("loftq_bits", 4)).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'loftq_config'");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"ADALORA\", \"rank_pattern\": {\"a.lora_E\": [1, 0]}}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'rank_pattern'");
        assertThatCode(() -> AdaLoraConfig.builder().totalStep(10).tinit(2).tfinal(3).build())
                .doesNotThrowAnyException();
    }

    @Test
    void ia3FeedforwardSubset() {
        assertThatThrownBy(() -> IA3Config.builder().targetModules("k_proj").feedforwardModules("down_proj").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'feedforward_modules'");
    }

    @Test
    void promptLearningRules() {
        assertThatThrownBy(() -> PromptTuningConfig.builder().promptTuningInit(PromptTuningInit.TEXT)
                .promptTuningInitText("hello").build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'tokenizer_name_or_path'");
        assertThatThrownBy(() -> PromptTuningConfig.builder().tokenizerKwargs(Map.of("use_fast", true)).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'tokenizer_kwargs'");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"PROMPT_TUNING\", \"prompt_tuning_init\": \"ZEROS\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'prompt_tuning_init'")
                .hasMessageContaining("SAMPLE_VOCAB");
        assertThatThrownBy(() -> PeftConfig.fromJson(
                "{\"peft_type\": \"P_TUNING\", \"encoder_reparameterization_type\": \"GRU\"}", "f.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'encoder_reparameterization_type'")
                .hasMessageContaining("LSTM");
        assertThatThrownBy(() -> PrefixTuningConfig.builder().numVirtualTokens(0).build())
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("'num_virtual_tokens'");
        assertThatCode(() -> PromptTuningConfig.builder().promptTuningInit(PromptTuningInit.TEXT)
                .promptTuningInitText("hello").tokenizerNameOrPath("gpt2").build()).doesNotThrowAnyException();
    }
}
