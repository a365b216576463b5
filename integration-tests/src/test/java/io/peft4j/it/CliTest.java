package io.peft4j.it;

import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.cli.Main;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/** The {@code peft} commands end to end, in-process. */
class CliTest {
    record Run(int code, String out, String err) {}

    static synchronized Run run(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = Main.execute(args);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    static String model() {
        return Reference.model("llama").toString();
    }

    @Test
    void logitsWithAndWithoutMergeMatchHf(@TempDir Path tmp) throws Exception {
        Path input = Reference.root().resolve("inputs.json");
        Path out = tmp.resolve("logits.safetensors");
        Run r = run("logits", "--model", model(), "--adapter", Reference.adapter("llama-lora").toString(),
                "--input", input.toString(), "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            assertThat(f.info("logits").shape()).containsExactly(2, 10, 256);
            Reference.assertClose(f.toFloatArray("logits"), Reference.tensor("llama-lora", "logits"), "cli logits");
        }
        Run merged = run("logits", "--model", model(), "--adapter", Reference.adapter("llama-lora").toString(),
                "--merge", "--input", input.toString(), "--out", out.toString());
        assertThat(merged.code()).as(merged.err()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            Reference.assertClose(f.toFloatArray("logits"), Reference.tensor("llama-lora", "merged_logits"), "merged");
        }
        Run base = run("logits", "--model", model(), "--input", input.toString(), "--out", out.toString());
        assertThat(base.code()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            Reference.assertClose(f.toFloatArray("logits"), Reference.tensor("llama-base", "logits"), "base");
        }
    }

    @Test
    void trainablePrintsHfLine() throws Exception {
        Run r = run("trainable", "--model", model(), "--config",
                Reference.adapter("llama-lora-all-linear").resolve("adapter_config.json").toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out().trim()).isEqualTo(Reference.manifest("llama-lora-all-linear")
                .get("print_trainable_parameters").asText());
    }

    @Test
    void mergeWritesALoadableModelDirectory(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("merged");
        Run r = run("merge", "--model", model(), "--adapter", Reference.adapter("llama-rslora").toString(),
                "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(out.resolve("config.json")).exists();
        assertThat(out.resolve("generation_config.json")).exists();
        Path logits = tmp.resolve("l.safetensors");
        Run l = run("logits", "--model", out.toString(), "--input", Reference.root().resolve("inputs.json").toString(),
                "--out", logits.toString());
        assertThat(l.code()).as(l.err()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(logits)) {
            Reference.assertClose(f.toFloatArray("logits"), Reference.tensor("llama-rslora", "merged_logits"), "merged");
        }
    }

    @Test
    void trainLowersTheLossAndSavesAnAdapterThatLoads(@TempDir Path tmp) throws Exception {
        Path data = trainingData(tmp);
        Path out = tmp.resolve("adapter");
        Run r = run("train", "--model", model(), "--config",
                Reference.adapter("llama-lora").resolve("adapter_config.json").toString(), "--data", data.toString(),
                "--steps", "30", "--scheduler", "constant", "--logging-steps", "1", "--lr", "1e-2", "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<Double> losses = losses(r.out(), "loss=([0-9.]+)");
        assertThat(losses).hasSize(30);
        assertThat(losses.get(29)).isLessThan(losses.get(0) - 0.5);
        assertThat(out.resolve("adapter_model.safetensors")).exists();
        Run l = run("logits", "--model", model(), "--adapter", out.toString(), "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", tmp.resolve("x.safetensors").toString());
        assertThat(l.code()).as(l.err()).isZero();
    }

    /** The trainer from the command line: checkpoints, metrics, evaluation, and a resumed run ends where an uninterrupted one does. */
    @Test
    void trainCheckpointsAndResumesToTheSameAdapter(@TempDir Path tmp) throws Exception {
        Path data = tmp.resolve("data.jsonl");
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            lines.add("{\"input_ids\": [5, 9, 17, 33], \"labels\": [-100, -100, 17, " + (30 + i) + "]}");
        }
        Files.write(data, lines);
        String cfg = Reference.adapter("llama-lora").resolve("adapter_config.json").toString();
        Path a = tmp.resolve("a");
        Run full = run("train", "--model", model(), "--config", cfg, "--data", data.toString(), "--eval-data",
                data.toString(), "--epochs", "2", "--batch-size", "2", "--grad-accum", "2", "--warmup-steps", "2",
                "--lr", "1e-2", "--save-steps", "3", "--logging-steps", "2", "--out", a.toString());
        assertThat(full.code()).as(full.err()).isZero();
        // 12 rows / 2 = 6 micro-batches = 3 steps per epoch, 6 in all
        assertThat(a.resolve("checkpoints/checkpoint-3/adapter_model.safetensors")).exists();
        assertThat(a.resolve("checkpoints/checkpoint-6/trainer_state.json")).exists();
        assertThat(full.out()).contains("step 6/6 loss=").contains("eval step 6 eval_loss=");
        List<String> metrics = Files.readAllLines(a.resolve("metrics.jsonl"));
        assertThat(metrics).hasSize(4); // logs at steps 2, 4, 6 and the final evaluation
        assertThat(metrics.get(0)).startsWith("{\"step\":2,\"loss\":");
        assertThat(metrics.get(3)).startsWith("{\"step\":6,\"eval_loss\":");

        Path b = tmp.resolve("b");
        Run resumed = run("train", "--model", model(), "--config", cfg, "--data", data.toString(), "--epochs", "2",
                "--batch-size", "2", "--grad-accum", "2", "--warmup-steps", "2", "--lr", "1e-2", "--quiet",
                "--resume", a.resolve("checkpoints/checkpoint-3").toString(), "--out", b.toString());
        assertThat(resumed.code()).as(resumed.err()).isZero();
        assertThat(resumed.out()).doesNotContain("loss=").contains("trained to step 6");
        try (SafetensorsFile x = SafetensorsFile.open(a.resolve("adapter_model.safetensors"));
             SafetensorsFile y = SafetensorsFile.open(b.resolve("adapter_model.safetensors"))) {
            assertThat(y.names()).isEqualTo(x.names());
            for (String n : x.names()) {
                assertThat(y.toFloatArray(n)).as(n).isEqualTo(x.toFloatArray(n));
            }
        }
        Run bad = run("train", "--model", model(), "--config", cfg, "--data", data.toString(), "--batch-size", "3",
                "--resume", a.resolve("checkpoints/checkpoint-3").toString(), "--out", tmp.resolve("c").toString());
        assertThat(bad.code()).isNotZero();
        List<String> errLines = bad.err().trim().lines().toList();
        assertThat(errLines.get(errLines.size() - 1)).startsWith("peft train: error: ").contains("batch_size was 2");
        assertThat(bad.err()).doesNotContain("\tat ");
    }

    /**
     * {@code peft train} with peft's pruned AdaLoRA config (total_step 5, tinit 1, tfinal 1, target_r 4): the rank
     * budget runs every step, the saved tensors are cut to 4 ranks per matrix on average, and the adapter loads.
     */
    @Test
    void trainRunsAdaLorasRankBudget(@TempDir Path tmp) throws Exception {
        Path data = tmp.resolve("data.jsonl");
        Files.write(data, List.of("{\"input_ids\": [5, 9, 17, 33, 65, 129, 10, 5, 9, 17]}"));
        Path out = tmp.resolve("adapter");
        Run r = run("train", "--model", model(), "--config",
                Reference.adapter("llama-adalora-pruned").resolve("adapter_config.json").toString(), "--data",
                data.toString(), "--steps", "6", "--lr", "1e-2", "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains(Reference.manifest("llama-adalora-pruned").get("print_trainable_parameters").asText());
        long kept = 0;
        try (SafetensorsFile f = SafetensorsFile.open(out.resolve("adapter_model.safetensors"))) {
            for (String n : f.names()) {
                if (n.endsWith(".lora_E")) {
                    kept += f.info(n).shape()[0];
                }
            }
        }
        assertThat(kept).isEqualTo(4 * 4);
        JsonNode saved = Reference.JSON.readTree(out.resolve("adapter_config.json").toFile());
        assertThat(saved.get("rank_pattern").has("model.layers.0.self_attn.q_proj.lora_E")).isTrue();
        Run l = run("logits", "--model", model(), "--adapter", out.toString(), "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", tmp.resolve("x.safetensors").toString());
        assertThat(l.code()).as(l.err()).isZero();
    }

    /**
     * {@code peft train} with {@code init_lora_weights "lora_ga"}: gradients from the first batches initialise the
     * adapter, training starts from the base model's function (the same first loss as default LoRA), and the saved
     * adapter is plain LoRA of twice the rank for the original base model.
     */
    @Test
    void trainWithLoraGaStartsFromTheBaseFunctionAndSavesPlainLora(@TempDir Path tmp) throws Exception {
        Path data = trainingData(tmp);
        Path plainConfig = Reference.adapter("llama-lora").resolve("adapter_config.json");
        com.fasterxml.jackson.databind.node.ObjectNode cfg =
                (com.fasterxml.jackson.databind.node.ObjectNode) Reference.JSON.readTree(plainConfig.toFile());
        cfg.put("init_lora_weights", "lora_ga");
        cfg.putObject("lora_ga_config"); // peft's defaults
        Path gaConfig = tmp.resolve("ga.json");
        Files.writeString(gaConfig, cfg.toString());
        Path out = tmp.resolve("adapter");
        Run ga = run("train", "--model", model(), "--config", gaConfig.toString(), "--data", data.toString(),
                "--steps", "3", "--logging-steps", "1", "--lr", "1e-2", "--lora-ga-batches", "2", "--out", out.toString());
        assertThat(ga.code()).as(ga.err()).isZero();
        assertThat(ga.out()).contains("LoRA-GA: estimating gradients on 2 batches")
                .contains("converted to plain LoRA of twice the rank");
        Run plain = run("train", "--model", model(), "--config", plainConfig.toString(), "--data", data.toString(),
                "--steps", "1", "--logging-steps", "1", "--out", tmp.resolve("plain").toString());
        assertThat(plain.code()).as(plain.err()).isZero();
        assertThat(firstLoss(ga.out())).isCloseTo(firstLoss(plain.out()), org.assertj.core.api.Assertions.within(2e-4));

        com.fasterxml.jackson.databind.JsonNode saved = Reference.JSON.readTree(out.resolve("adapter_config.json").toFile());
        assertThat(saved.get("r").asInt()).isEqualTo(16);
        assertThat(saved.get("lora_alpha").asInt()).isEqualTo(32);
        assertThat(saved.get("init_lora_weights").asBoolean()).isTrue();
        Run l = run("logits", "--model", model(), "--adapter", out.toString(), "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", tmp.resolve("x.safetensors").toString());
        assertThat(l.code()).as(l.err()).isZero();
    }

    /** Eight short sequences of ids as {@code peft train} reads them. */
    static Path trainingData(Path tmp) throws java.io.IOException {
        Path data = tmp.resolve("data.jsonl");
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            lines.add("{\"input_ids\": [5, 9, 17, 33, 65, 129, " + (10 + i) + ", 5, 9, 17]}");
        }
        Files.write(data, lines);
        return data;
    }

    /** Every first group of {@code regex} in {@code out}, as numbers (the losses a training run printed). */
    static List<Double> losses(String out, String regex) {
        Matcher m = Pattern.compile(regex).matcher(out);
        List<Double> values = new ArrayList<>();
        while (m.find()) {
            values.add(Double.parseDouble(m.group(1)));
        }
        return values;
    }

    private static double firstLoss(String out) {
        Matcher m = Pattern.compile("step 1/\\d+ loss=([0-9.]+)").matcher(out);
        assertThat(m.find()).as(out).isTrue();
        return Double.parseDouble(m.group(1));
    }

    /** {@code peft train} with prompt-learning configs; the saved adapter loads in {@code peft logits}. */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"llama-prompt", "llama-ptuning", "llama-prefix-proj"})
    void trainWorksWithPromptLearningConfigs(String name, @TempDir Path tmp) throws Exception {
        Path data = trainingData(tmp);
        Path out = tmp.resolve("adapter");
        Run r = run("train", "--model", model(), "--config",
                Reference.adapter(name).resolve("adapter_config.json").toString(), "--data", data.toString(),
                "--steps", "20", "--scheduler", "constant", "--logging-steps", "1", "--lr", "5e-2", "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains(Reference.manifest(name).get("print_trainable_parameters").asText());
        List<Double> losses = losses(r.out(), "loss=([0-9.]+)");
        assertThat(losses).hasSize(20);
        assertThat(losses.get(19)).isLessThan(losses.get(0));
        try (SafetensorsFile f = SafetensorsFile.open(out.resolve("adapter_model.safetensors"))) {
            assertThat(f.names()).containsExactly("prompt_embeddings");
        }
        Path logits = tmp.resolve("x.safetensors");
        Run l = run("logits", "--model", model(), "--adapter", out.toString(), "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", logits.toString());
        assertThat(l.code()).as(l.err()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(logits)) {
            // Prompt tuning and P-tuning report the 6 virtual positions first, as peft does.
            assertThat(f.info("logits").shape()).containsExactly(2, name.contains("prefix") ? 10 : 16, 256);
        }
        Run merge = run("logits", "--model", model(), "--adapter", out.toString(), "--merge", "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", logits.toString());
        assertThat(merge.code()).isNotZero();
        assertThat(merge.err()).contains("not supported for prompt-learning methods");
    }

    @Test
    void userErrorsPrintOneLineAndExitNonZero(@TempDir Path tmp) throws Exception {
        Path badJson = tmp.resolve("bad.json");
        Files.writeString(badJson, "{\"input_ids\": [[1, 2], [3]]}");
        Path truncated = tmp.resolve("adapter");
        Files.createDirectories(truncated);
        Files.copy(Reference.adapter("llama-lora").resolve("adapter_config.json"),
                truncated.resolve("adapter_config.json"));
        byte[] weights = Files.readAllBytes(Reference.adapter("llama-lora").resolve("adapter_model.safetensors"));
        Files.write(truncated.resolve("adapter_model.safetensors"), java.util.Arrays.copyOf(weights, weights.length - 100));

        Path data = tmp.resolve("data.jsonl");
        Files.writeString(data, "{\"input_ids\": [5, 6, 7, 8]}\n");

        String[][] cases = {
                {"logits", "--model", tmp.resolve("missing").toString(), "--input", badJson.toString(), "--out", "x"},
                {"logits", "--model", model(), "--input", badJson.toString(), "--out", tmp.resolve("o").toString()},
                {"logits", "--model", model(), "--adapter", truncated.toString(), "--input",
                        Reference.root().resolve("inputs.json").toString(), "--out", tmp.resolve("o").toString()},
                {"trainable", "--model", model(), "--config", tmp.resolve("nope.json").toString()},
                {"inspect", tmp.resolve("nothing").toString()},
                {"logits", "--model"},
                {"train", "--model", model(), "--config",
                        Reference.adapter("llama-lora").resolve("adapter_config.json").toString(), "--data",
                        data.toString(), "--steps", "1", "--out", tmp.resolve("o2").toString(),
                        "--loraplus-lr-ratio", "0"},
        };
        String[] expected = {"missing", "row 1", "adapter_model.safetensors", "nope.json", "nothing", "--model",
                "loraplus_lr_ratio"};
        for (int i = 0; i < cases.length; i++) {
            Run r = run(cases[i]);
            assertThat(r.code()).as(String.join(" ", cases[i])).isNotZero();
            String err = r.err().trim();
            assertThat(err.lines().count()).as(err).isEqualTo(1);
            assertThat(err).contains(expected[i]).doesNotContain("Exception in").doesNotContain("\tat ");
        }
    }
}
