package io.peft4j.it;

import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.nn.Torch;
import io.peft4j.transformers.llama.LlamaConfig;
import io.peft4j.transformers.llama.LlamaForCausalLM;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** {@code peft train} on real instruction text, tokenised with a real HF tokenizer.json. */
class TrainTextTest {

    static Path fixtures() {
        String prop = System.getProperty("peft4j.shared");
        for (Path p : new Path[] {prop == null ? null : Paths.get(prop), Paths.get("../shared"), Paths.get("../../shared")}) {
            if (p != null && Files.isRegularFile(p.resolve("fixtures/tokenizer-assets/tokenizer.json"))) {
                return p.resolve("fixtures/tokenizer-assets");
            }
        }
        return null;
    }

    @Test
    void trainsOnTextThroughTheModelsTokenizer(@TempDir Path tmp) throws Exception {
        Path assets = fixtures();
        Assumptions.assumeTrue(assets != null, "../shared/fixtures/tokenizer-assets not found; skipping");
        // A random tiny LLaMA whose vocabulary fits the 2000-token test tokenizer.
        Path modelDir = tmp.resolve("tiny-llama");
        Torch.manualSeed(11);
        LlamaConfig cfg = LlamaConfig.builder().vocabSize(2000).hiddenSize(32).intermediateSize(64)
                .numHiddenLayers(2).numAttentionHeads(4).numKeyValueHeads(2).maxPositionEmbeddings(256).build();
        try (LlamaForCausalLM model = new LlamaForCausalLM(Torch.newManager(), cfg)) {
            HfModels.savePretrained(model, modelDir);
        }
        Files.copy(assets.resolve("tokenizer.json"), modelDir.resolve("tokenizer.json"));

        JsonNode rows = Reference.JSON.readTree(assets.resolve("alpaca_tiny.json").toFile());
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            ObjectWriter w = new ObjectWriter();
            lines.add(w.text(rows.get(i).get("text").asText()));
        }
        Path data = tmp.resolve("data.jsonl");
        Files.write(data, lines);
        Path adapterCfg = tmp.resolve("cfg");
        LoraConfig.builder().r(8).loraAlpha(16).targetModules(io.peft4j.config.TargetModules.allLinear()).taskType(TaskType.CAUSAL_LM)
                .build().save(adapterCfg);

        Path out = tmp.resolve("adapter");
        CliTest.Run r = CliTest.run("train", "--model", modelDir.toString(), "--config", adapterCfg.toString(),
                "--data", data.toString(), "--steps", "60", "--scheduler", "constant", "--logging-steps", "1", "--lr", "1e-2", "--max-length", "64",
                "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<Double> losses = CliTest.losses(r.out(), "loss=([0-9.]+)");
        assertThat(losses).hasSize(60);
        // Random model: the first loss is near ln(2000) = 7.6; training must move it down.
        assertThat(losses.get(0)).isBetween(6.5, 8.5);
        double head = losses.subList(0, 4).stream().mapToDouble(Double::doubleValue).average().orElseThrow();
        double tail = losses.subList(56, 60).stream().mapToDouble(Double::doubleValue).average().orElseThrow();
        assertThat(tail).isLessThan(head - 0.3);
        assertThat(out.resolve("adapter_model.safetensors")).exists();
        assertThat(Files.readString(out.resolve("adapter_config.json"))).contains("\"inference_mode\": true");
    }

    /** JSON line {"text": ...}. */
    static final class ObjectWriter {
        String text(String t) throws Exception {
            return Reference.JSON.writeValueAsString(java.util.Map.of("text", t));
        }
    }
}
