package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LoadingTest {
    private static final ObjectMapper M = new ObjectMapper();

    @Test
    void enumsHaveAllValues() {
        assertThat(PeftType.values()).hasSize(44);
        assertThat(PeftType.valueOf("TRAINABLE_TOKENS")).isNotNull();
        assertThat(TaskType.values()).extracting(Enum::name).containsExactly("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM",
                "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION");
    }

    @Test
    void missingPeftType(@TempDir Path tmp) throws Exception {
        Files.writeString(tmp.resolve("adapter_config.json"), "{\"r\": 8}");
        assertThatThrownBy(() -> PeftConfig.fromPretrained(tmp))
                .isExactlyInstanceOf(PeftConfigException.class)
                .hasMessageEndingWith("adapter_config.json: missing required key 'peft_type'")
                .hasMessageContaining(tmp.toString());
    }

    @Test
    void unsupportedKnownTypeListsSupportedOnes() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"LOHA\"}", "loha/adapter_config.json"))
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("loha/adapter_config.json")
                .hasMessageContaining("LOHA")
                .hasMessageContaining("LORA").hasMessageContaining("P_TUNING").hasMessageContaining("IA3");
    }

    @Test
    void unknownTypeString() {
        assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"MAGIC\"}", "m.json"))
                .isInstanceOf(PeftConfigException.class)
                .hasMessageContaining("m.json").hasMessageContaining("MAGIC").hasMessageContaining("'peft_type'");
    }

    @Test
    void invalidJsonNamesTheFile(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("adapter_config.json");
        Files.writeString(file, "{\"peft_type\": \"LORA\",");
        assertThatThrownBy(() -> PeftConfig.fromPretrained(file))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining(file.toString());
        assertThatThrownBy(() -> PeftConfig.fromJson("[1, 2]", "arr.json"))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("arr.json");
        assertThatThrownBy(() -> PeftConfig.fromPretrained(tmp.resolve("missing")))
                .isInstanceOf(PeftConfigException.class).hasMessageContaining("missing");
    }

    @Test
    void peftTypeIsForcedAndDispatched() {
        PeftConfig c = PeftConfig.fromJson("{\"peft_type\": \"ADALORA\"}", "a.json");
        assertThat(c).isInstanceOf(AdaLoraConfig.class);
        assertThat(c.peftType()).isEqualTo(PeftType.ADALORA);
        assertThat(c.sourceName()).isEqualTo("a.json");
        assertThat(c.toJson()).isEqualTo("{\n  \"peft_type\": \"ADALORA\"\n}");
    }

    @Test
    void registryAcceptsNewTypes() {
        assertThat(PeftConfig.isSupported(PeftType.VERA)).isFalse();
        assertThat(PeftConfig.supportedTypes()).containsExactly(PeftType.PROMPT_TUNING, PeftType.P_TUNING,
                PeftType.PREFIX_TUNING, PeftType.LORA, PeftType.ADALORA, PeftType.IA3);
        try {
            // stands in for a later module's config class
            PeftConfig.register(PeftType.VERA, node -> LoraConfig.builder().r(node.get("r").intValue()).build());
            PeftConfig c = PeftConfig.fromJson("{\"peft_type\": \"VERA\", \"r\": 3}", "v.json");
            assertThat(((LoraConfig) c).r()).isEqualTo(3);
            assertThat(PeftConfig.supportedTypes()).contains(PeftType.VERA);
        } finally {
            PeftConfig.unregister(PeftType.VERA);
        }
        assertThat(PeftConfig.isSupported(PeftType.VERA)).isFalse();
    }

    @Test
    void unknownKeysAreKeptWrittenBackAndWarnedOnce() throws Exception {
        String json = "{\n  \"future_option\": {\n    \"x\": 1.5\n  },\n  \"peft_type\": \"LORA\",\n  \"r\": 4\n}";
        PrintStream oldErr = System.err;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PeftConfig c;
        try {
            System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
            c = PeftConfig.fromJson(json, "future.json");
            c.toJson();
            c.unknownFields();
        } finally {
            System.setErr(oldErr);
        }
        String log = captured.toString(StandardCharsets.UTF_8);
        assertThat(log).contains("WARN").contains("future.json").contains("'future_option'");
        assertThat(log.split("future_option", -1)).hasSize(2);
        assertThat(c.unknownFields()).containsOnlyKeys("future_option");
        assertThat(c.unknownFields().get("future_option")).isEqualTo(M.readTree("{\"x\": 1.5}"));
        assertThat(c.toJson()).isEqualTo(json);
        c.unknownFields().get("future_option"); // copies: mutating them must not affect the config
        ((com.fasterxml.jackson.databind.node.ObjectNode) c.unknownFields().get("future_option")).put("y", 2);
        assertThat(c.toJson()).isEqualTo(json);
    }

    @Test
    void runtimeConfigIsDroppedLikePeftDoes() {
        PeftConfig c = PeftConfig.fromJson(
                "{\"peft_type\": \"LORA\", \"runtime_config\": {\"ephemeral_gpu_offload\": false}}", "rt.json");
        assertThat(c.unknownFields()).isEmpty();
        assertThat(c.toJson()).doesNotContain("runtime_config");
    }

    @Test
    void nonAsciiAndNumbersFromFilesRoundTrip() {
        String json = "{\n  \"base_model_name_or_path\": \"m\\u00fcller/\\u6a21\\u578b\",\n"
                + "  \"lora_alpha\": 16.0,\n  \"lora_dropout\": 0.05,\n  \"peft_type\": \"LORA\",\n"
                + "  \"qalora_group_size\": 16\n}";
        LoraConfig c = (LoraConfig) PeftConfig.fromJson(json, "u.json");
        assertThat(c.baseModelNameOrPath()).isEqualTo("m\u00fcller/\u6a21\u578b");
        assertThat(c.loraDropout()).isEqualTo(0.05);
        assertThat(c.toJson()).isEqualTo(json);
    }
}
