package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Files written by real peft 0.13.2 must come back byte for byte. */
class HfReferenceRoundTripTest {

    static Stream<Arguments> resourceCases() {
        return Stream.of(
                Arguments.of("llama-lora", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-rslora", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-lora-gaussian", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-lora-all-linear", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-lora-patterns", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-dora", PeftType.LORA, LoraConfig.class),
                Arguments.of("gpt2-lora-embed-fan-in-fan-out", PeftType.LORA, LoraConfig.class),
                Arguments.of("bert-lora", PeftType.LORA, LoraConfig.class),
                Arguments.of("llama-adalora", PeftType.ADALORA, AdaLoraConfig.class),
                Arguments.of("llama-adalora-pruned", PeftType.ADALORA, AdaLoraConfig.class),
                Arguments.of("llama-ia3", PeftType.IA3, IA3Config.class),
                Arguments.of("llama-prompt", PeftType.PROMPT_TUNING, PromptTuningConfig.class),
                Arguments.of("llama-prefix", PeftType.PREFIX_TUNING, PrefixTuningConfig.class),
                Arguments.of("llama-prefix-proj", PeftType.PREFIX_TUNING, PrefixTuningConfig.class),
                Arguments.of("llama-ptuning", PeftType.P_TUNING, PromptEncoderConfig.class));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("resourceCases")
    void resourceCopyRoundTripsByteExact(String name, PeftType type, Class<?> cls) {
        Path dir = SharedData.resourceCase(name);
        String text = SharedData.read(dir.resolve("adapter_config.json"));
        PeftConfig config = PeftConfig.fromPretrained(dir);
        assertThat(config).isInstanceOf(cls);
        assertThat(config.peftType()).isEqualTo(type);
        assertThat(config.unknownFields()).isEmpty();
        assertThat(config.toJson()).isEqualTo(text);
    }

    static Stream<Path> sharedReferenceFiles() {
        return SharedData.filesOrSkipMarker("hf-reference/adapters");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("sharedReferenceFiles")
    void everySharedReferenceFileRoundTripsByteExact(Path file) {
        SharedData.assumePresent(file);
        String text = SharedData.read(file);
        PeftConfig config = PeftConfig.fromPretrained(file.getParent());
        assertThat(config.toJson()).isEqualTo(text);
    }

    @Test
    void sharedReferenceSetIsComplete() {
        Path dir = SharedData.requireShared("hf-reference/adapters");
        assertThat(SharedData.configFilesUnder(dir)).hasSize(34);
    }

    @Test
    void saveWritesThePeftFileAgain(@org.junit.jupiter.api.io.TempDir Path tmp) {
        Path dir = SharedData.resourceCase("llama-dora");
        PeftConfig.fromPretrained(dir).save(tmp);
        assertThat(SharedData.read(tmp.resolve("adapter_config.json")))
                .isEqualTo(SharedData.read(dir.resolve("adapter_config.json")));
    }

    @Test
    void loraFieldsAreDecoded() {
        LoraConfig c = (LoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-lora-patterns"));
        assertThat(c.r()).isEqualTo(8);
        assertThat(c.loraAlpha()).isEqualTo(16).isInstanceOf(Integer.class);
        assertThat(c.loraAlphaValue()).isEqualTo(16.0);
        assertThat(c.rankPattern()).containsExactly(Map.entry("down_proj", 4),
                Map.entry("model.layers.1.self_attn.q_proj", 2));
        assertThat(c.layersToTransform()).containsExactly(1);
        assertThat(c.layersPattern()).containsExactly("layers");
        assertThat(c.targetModules().names()).containsExactly("v_proj", "q_proj", "down_proj");
        assertThat(c.targetModules().isRegex()).isFalse();
        assertThat(c.taskType()).isEqualTo(TaskType.CAUSAL_LM);
        assertThat(c.baseModelNameOrPath()).isEqualTo("models/llama");
        assertThat(c.inferenceMode()).isTrue();
        assertThat(c.bias()).isEqualTo(LoraConfig.Bias.NONE);
        assertThat(c.initLoraWeights().isTrue()).isTrue();
        assertThat(c.megatronCore()).isEqualTo("megatron.core");
        assertThat(c.peftVersion()).isNull();
        assertThat(c.isPromptLearning()).isFalse();
    }

    @Test
    void variantsAreDecoded() {
        LoraConfig gaussian = (LoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-lora-gaussian"));
        assertThat(gaussian.initLoraWeights().isString()).isTrue();
        assertThat(gaussian.initLoraWeights().name()).isEqualTo("gaussian");
        LoraConfig rs = (LoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-rslora"));
        assertThat(rs.useRslora()).isTrue();
        LoraConfig dora = (LoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-dora"));
        assertThat(dora.useDora()).isTrue();
        LoraConfig gpt2 = (LoraConfig) PeftConfig.fromPretrained(
                SharedData.resourceCase("gpt2-lora-embed-fan-in-fan-out"));
        assertThat(gpt2.fanInFanOut()).isTrue();
        assertThat(gpt2.targetModules().names()).containsExactly("c_attn", "wte");
    }

    @Test
    void adaLoraPrunedMasksAreBooleanLists() {
        AdaLoraConfig c = (AdaLoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-adalora-pruned"));
        assertThat(c.initR()).isEqualTo(12);
        assertThat(c.targetR()).isEqualTo(4);
        assertThat(c.tinit()).isEqualTo(1);
        assertThat(c.tfinal()).isEqualTo(1);
        assertThat(c.beta1()).isEqualTo(0.85);
        assertThat(c.orthRegWeight()).isEqualTo(0.5);
        assertThat(c.totalStep()).isEqualTo(5);
        assertThat(c.rankPattern()).hasSize(4);
        assertThat(c.rankPattern().get("model.layers.0.self_attn.q_proj.lora_E")).containsExactly(
                false, true, false, true, false, false, false, true, false, false, false, false);
        AdaLoraConfig fresh = (AdaLoraConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-adalora"));
        assertThat(fresh.rankPattern()).isNull();
        assertThat(fresh.totalStep()).isNull();
        assertThat(fresh).isInstanceOf(AbstractLoraConfig.class);
    }

    @Test
    void promptLearningFieldsAreDecoded() {
        PromptTuningConfig pt = (PromptTuningConfig) PeftConfig.fromPretrained(SharedData.resourceCase("llama-prompt"));
        assertThat(pt.isPromptLearning()).isTrue();
        assertThat(pt.numVirtualTokens()).isEqualTo(6);
        assertThat(pt.tokenDim()).isEqualTo(64);
        assertThat(pt.numLayers()).isEqualTo(2);
        assertThat(pt.numAttentionHeads()).isEqualTo(4);
        assertThat(pt.numTransformerSubmodules()).isEqualTo(1);
        assertThat(pt.promptTuningInit()).isEqualTo(PromptTuningInit.RANDOM);
        PrefixTuningConfig prefix = (PrefixTuningConfig) PeftConfig.fromPretrained(
                SharedData.resourceCase("llama-prefix-proj"));
        assertThat(prefix.prefixProjection()).isTrue();
        assertThat(prefix.encoderHiddenSize()).isEqualTo(32);
        PromptEncoderConfig pe = (PromptEncoderConfig) PeftConfig.fromPretrained(
                SharedData.resourceCase("llama-ptuning"));
        assertThat(pe.encoderReparameterizationType()).isEqualTo(PromptEncoderReparameterizationType.MLP);
        assertThat(pe.encoderNumLayers()).isEqualTo(2);
        assertThat(pe.encoderDropout()).isEqualTo(0.0);
        IA3Config ia3 = (IA3Config) PeftConfig.fromPretrained(SharedData.resourceCase("llama-ia3"));
        assertThat(ia3.feedforwardModules().names()).isEqualTo(List.of("down_proj"));
        assertThat(ia3.initIa3Weights()).isTrue();
    }
}
