package io.peft4j.hub;

import io.peft4j.nn.model.PreTrainedModel;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.nio.file.Paths;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class HfModelsTest {

    static Path shared() {
        String prop = System.getProperty("peft4j.shared");
        for (Path p : new Path[] {prop == null ? null : Paths.get(prop), Paths.get("../shared"), Paths.get("../../shared")}) {
            if (p != null && Files.isDirectory(p.resolve("hf-reference"))) {
                return p;
            }
        }
        return null;
    }

    @Test
    void resolvesARepoIdInTheLocalCacheLayout(@TempDir Path tmp) throws Exception {
        Path repo = tmp.resolve("models--acme--tiny");
        Path snap = repo.resolve("snapshots").resolve("abc123");
        Files.createDirectories(snap);
        Files.createDirectories(repo.resolve("refs"));
        Files.writeString(repo.resolve("refs/main"), "abc123\n");
        Files.writeString(snap.resolve("config.json"), "{\"model_type\": \"llama\"}");
        assertThat(HfModels.snapshotIn(tmp, "acme/tiny")).isEqualTo(snap);
        assertThat(HfModels.snapshotIn(tmp, "acme/other")).isNull();
    }

    @Test
    void cacheLocationFollowsHuggingfaceHubRules() {
        assertThat(HfModels.hubCache(Map.of("HF_HUB_CACHE", "/a/hub", "HF_HOME", "/b"), "/home/u"))
                .isEqualTo(Path.of("/a/hub"));
        assertThat(HfModels.hubCache(Map.of("HF_HOME", "/b"), "/home/u")).isEqualTo(Path.of("/b/hub"));
        assertThat(HfModels.hubCache(Map.of(), "/home/u")).isEqualTo(Path.of("/home/u/.cache/huggingface/hub"));
    }

    @Test
    void refsMainPicksTheSnapshotAndBareNamesResolve(@TempDir Path tmp) throws Exception {
        Path repo = tmp.resolve("models--gpt2");
        Files.createDirectories(repo.resolve("snapshots/aaa"));
        Files.createDirectories(repo.resolve("snapshots/zzz"));
        Files.createDirectories(repo.resolve("refs"));
        Files.writeString(repo.resolve("refs/main"), "zzz");
        assertThat(HfModels.snapshotIn(tmp, "gpt2")).isEqualTo(repo.resolve("snapshots/zzz"));
        Files.writeString(repo.resolve("refs/main"), "aaa");
        assertThat(HfModels.snapshotIn(tmp, "gpt2")).isEqualTo(repo.resolve("snapshots/aaa"));
        assertThat(HfModels.snapshotIn(tmp, "acme/absent")).isNull();
    }

    @Test
    void adapterDirectoriesNeedAnAdapterConfig(@TempDir Path tmp) throws Exception {
        assertThatThrownBy(() -> HfModels.resolveAdapter(tmp.toString())).hasMessageContaining("no adapter_config.json");
        Files.writeString(tmp.resolve("adapter_config.json"), "{}");
        assertThat(HfModels.resolveAdapter(tmp.toString())).isEqualTo(tmp);
        assertThatThrownBy(() -> HfModels.resolveAdapter("acme/not-cached-adapter"))
                .hasMessageContaining("never downloads").hasMessageContaining("models--acme--not-cached-adapter");
    }

    @Test
    void missingOrForeignDirectoriesFailClearly(@TempDir Path tmp) throws Exception {
        assertThatThrownBy(() -> HfModels.resolve(tmp.toString())).hasMessageContaining("no config.json");
        assertThatThrownBy(() -> HfModels.resolve(tmp.resolve("nope").toString())).hasMessageContaining("no such directory");
        assertThatThrownBy(() -> HfModels.resolve("someone/not-cached")).hasMessageContaining("never downloads");
        Files.writeString(tmp.resolve("config.json"), "{\"model_type\": \"t5\"}");
        assertThatThrownBy(() -> HfModels.fromPretrained(tmp.toString())).hasMessageContaining("t5")
                .hasMessageContaining("not supported").hasMessageContaining("gpt2").hasMessageContaining("llama")
                .hasMessageContaining(tmp.resolve("config.json").toString());
    }

    @Test
    void architecturesAndTaskPickTheClass() throws Exception {
        Path shared = shared();
        Assumptions.assumeTrue(shared != null, "shared hf-reference not found");
        Path gpt2 = shared.resolve("hf-reference/models/gpt2");
        try (PreTrainedModel lm = HfModels.fromPretrained(gpt2.toString())) {
            assertThat(lm).isInstanceOf(io.peft4j.transformers.gpt2.Gpt2LMHeadModel.class);
            assertThat(lm.nameOrPath()).isEqualTo(gpt2.toString());
        }
        try (PreTrainedModel cls = HfModels.fromPretrained(gpt2.toString(), io.peft4j.config.TaskType.SEQ_CLS)) {
            assertThat(cls).isInstanceOf(io.peft4j.transformers.gpt2.Gpt2ForSequenceClassification.class);
        }
        assertThatThrownBy(() -> HfModels.fromPretrained(shared.resolve("hf-reference/models/llama").toString(),
                io.peft4j.config.TaskType.SEQ_CLS)).hasMessageContaining("no SEQ_CLS model");
    }

    @Test
    void savedModelReloadsWithTheSameWeights(@TempDir Path tmp) throws Exception {
        Path shared = shared();
        Assumptions.assumeTrue(shared != null, "../shared/hf-reference not found; skipping");
        Path out = tmp.resolve("copy");
        try (PreTrainedModel m = HfModels.fromPretrained(shared.resolve("hf-reference/models/llama"))) {
            HfModels.savePretrained(m, out, 100_000);
            assertThat(out.resolve("model.safetensors.index.json")).exists();
            try (PreTrainedModel again = HfModels.fromPretrained(out)) {
                assertThat(again.getParameter("model.layers.1.mlp.down_proj.weight").data().toFloatArray())
                        .containsExactly(m.getParameter("model.layers.1.mlp.down_proj.weight").data().toFloatArray());
            }
        }
    }

    @Test
    void tokenizerEncodesWithTheRealGpt2Vocabulary() throws Exception {
        Path shared = shared();
        Assumptions.assumeTrue(shared != null && Files.exists(shared.resolve("fixtures/tiny-gpt2/tokenizer.json")),
                "../shared/fixtures/tiny-gpt2 not found; skipping");
        try (HfTokenizer tok = HfTokenizer.load(shared.resolve("fixtures/tiny-gpt2"))) {
            // GPT-2's vocabulary: "Hello" = 15496, " world" = 995.
            assertThat(tok.encode("Hello world")).containsExactly(15496, 995);
            assertThat(tok.decode(new long[] {15496, 995})).isEqualTo("Hello world");
        }
    }

    /** Byte-level BPE is lossless: decode(encode(text)) gives the text back, for real instruction data. */
    @Test
    void byteLevelTokenizersRoundTripRealText() throws Exception {
        Path shared = shared();
        Path assets = shared == null ? null : shared.resolve("fixtures/tokenizer-assets");
        Assumptions.assumeTrue(assets != null && Files.exists(assets.resolve("alpaca_tiny.json")),
                "../shared/fixtures/tokenizer-assets not found; skipping");
        com.fasterxml.jackson.databind.JsonNode rows = new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(assets.resolve("alpaca_tiny.json").toFile());
        java.util.List<String> texts = new java.util.ArrayList<>(java.util.List.of(
                "  leading spaces, tabs\tand\nnewlines  ", "unicode: café naïve 日本語 🙂", ""));
        rows.forEach(r -> texts.add(r.get("text").asText()));
        for (Path dir : new Path[] {shared.resolve("fixtures/tiny-gpt2"), assets}) {
            try (HfTokenizer tok = HfTokenizer.load(dir)) {
                for (String t : texts) {
                    assertThat(tok.decode(tok.encode(t))).as(dir + ": " + t).isEqualTo(t);
                }
            }
        }
    }
}
