package io.peft4j.transformers;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class GenerationConfigTest {
    @Test
    void defaultsAreTransformersDefaults() {
        GenerationConfig c = GenerationConfig.defaults();
        assertThat(c.doSample()).isFalse();
        assertThat(c.temperature()).isEqualTo(1.0);
        assertThat(c.topK()).isEqualTo(50);
        assertThat(c.topP()).isEqualTo(1.0);
        assertThat(c.eosTokenIds()).isEmpty();
        assertThat(c.padTokenId()).isNull();
        assertThat(c.seed()).isNull();
        assertThat(c.useCache()).isTrue();
        assertThat(c.maxNewTokens()).isEqualTo(32);
        assertThat(c.effectivePadTokenId()).isZero();
    }

    @Test
    void readsGenerationConfigJsonWithAListOfEosIds(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("generation_config.json"), """
                {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
                 "temperature": 0.6, "top_p": 0.9, "top_k": 20, "max_new_tokens": 7, "pad_token_id": null,
                 "transformers_version": "4.45.0"}
                """);
        GenerationConfig c = GenerationConfig.fromPretrained(dir);
        assertThat(c.doSample()).isTrue();
        assertThat(c.temperature()).isEqualTo(0.6);
        assertThat(c.topP()).isEqualTo(0.9);
        assertThat(c.topK()).isEqualTo(20);
        assertThat(c.maxNewTokens()).isEqualTo(7);
        assertThat(c.eosTokenIds()).containsExactly(128001L, 128008L, 128009L);
        assertThat(c.bosTokenId()).isEqualTo(128000L);
        assertThat(c.padTokenId()).isNull();
        // transformers pads with the first EOS id when no pad id is set.
        assertThat(c.effectivePadTokenId()).isEqualTo(128001L);
    }

    @Test
    void readsASingleEosIdAndKeepsDefaultsForAbsentFields(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("generation_config.json"),
                "{\"_from_model_config\": true, \"bos_token_id\": 50256, \"eos_token_id\": 50256}");
        GenerationConfig c = GenerationConfig.fromPretrained(dir);
        assertThat(c.eosTokenIds()).containsExactly(50256L);
        assertThat(c.doSample()).isFalse();
        assertThat(c.topK()).isEqualTo(50);
        assertThat(c.maxNewTokens()).isEqualTo(GenerationConfig.DEFAULT_MAX_NEW_TOKENS);
    }

    @Test
    void withoutGenerationConfigTakesTokenIdsFromConfigJson(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("config.json"),
                "{\"model_type\": \"llama\", \"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 0,"
                        + " \"temperature\": 0.1, \"max_new_tokens\": 3}");
        GenerationConfig c = GenerationConfig.fromPretrained(dir);
        assertThat(c.eosTokenIds()).containsExactly(2L);
        assertThat(c.padTokenId()).isZero();
        assertThat(c.bosTokenId()).isEqualTo(1L);
        // Only the token ids come from config.json.
        assertThat(c.temperature()).isEqualTo(1.0);
        assertThat(c.maxNewTokens()).isEqualTo(GenerationConfig.DEFAULT_MAX_NEW_TOKENS);
    }

    @Test
    void anEmptyDirectoryGivesTheDefaults(@TempDir Path dir) throws Exception {
        assertThat(GenerationConfig.fromPretrained(dir)).isEqualTo(GenerationConfig.defaults());
    }

    @Test
    void greedyFilesMayCarryUnusedSamplingValues(@TempDir Path dir) throws Exception {
        // transformers only warns about temperature 0 when do_sample is false.
        Files.writeString(dir.resolve("generation_config.json"), "{\"do_sample\": false, \"temperature\": 0.0}");
        assertThat(GenerationConfig.fromPretrained(dir).temperature()).isZero();
    }

    @Test
    void badFilesNameTheFileAndField(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("generation_config.json");
        Files.writeString(f, "{\"eos_token_id\": \"two\"}");
        assertThatThrownBy(() -> GenerationConfig.fromPretrained(dir)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("generation_config.json").hasMessageContaining("eos_token_id");
        Files.writeString(f, "{\"do_sample\": true, \"top_p\": 1.5}");
        assertThatThrownBy(() -> GenerationConfig.fromPretrained(dir)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("generation_config.json").hasMessageContaining("top_p");
        Files.writeString(f, "{not json");
        assertThatThrownBy(() -> GenerationConfig.fromPretrained(dir)).isInstanceOf(java.io.IOException.class)
                .hasMessageContaining("not valid JSON");
    }

    @Test
    void builderValidatesSamplingSettings() {
        assertThatThrownBy(() -> GenerationConfig.builder().maxNewTokens(0).build())
                .hasMessageContaining("max_new_tokens");
        assertThatThrownBy(() -> GenerationConfig.builder().doSample(true).temperature(0).build())
                .hasMessageContaining("temperature");
        assertThatThrownBy(() -> GenerationConfig.builder().doSample(true).topK(-1).build())
                .hasMessageContaining("top_k");
        assertThatThrownBy(() -> GenerationConfig.builder().doSample(true).topP(-0.1).build())
                .hasMessageContaining("top_p");
        assertThatThrownBy(() -> GenerationConfig.builder().eosTokenIds(List.of(-1L)))
                .hasMessageContaining("eos_token_id");
    }

    @Test
    void toBuilderRoundTrips() {
        GenerationConfig c = GenerationConfig.builder().maxNewTokens(5).doSample(true).temperature(0.7).topK(3)
                .topP(0.8).eosTokenIds(List.of(1L, 2L)).padTokenId(0L).bosTokenId(9L).seed(4L).useCache(false).build();
        assertThat(c.toBuilder().build()).isEqualTo(c).hasSameHashCodeAs(c);
        assertThat(c.toBuilder().seed(5L).build()).isNotEqualTo(c);
    }
}
