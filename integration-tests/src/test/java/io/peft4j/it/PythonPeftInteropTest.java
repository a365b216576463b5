package io.peft4j.it;

import io.peft4j.it.CliTest.Run;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static io.peft4j.it.CliTest.run;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Adapters trained by peft4j load in the real Python peft and give the same logits. Runs only where
 * {@code PEFT4J_PYTHON} names a Python with torch, transformers and peft (not part of the build: CI skips it).
 */
class PythonPeftInteropTest {
    /** The reference model a reference config belongs to ({@code gpt2-...} or {@code llama-...}). */
    private static String model(String config) {
        return Reference.model(config.substring(0, config.indexOf('-'))).toString();
    }

    private static String python() {
        String py = System.getenv("PEFT4J_PYTHON");
        Assumptions.assumeTrue(py != null && !py.isBlank(),
                "PEFT4J_PYTHON is not set (a Python with torch, transformers and peft); skipping the Python peft check");
        return py;
    }

    /** The other way round: adapters created and saved by Python peft (its current version) load in peft4j. */
    @ParameterizedTest
    @ValueSource(strings = {"llama-lora", "llama-dora", "llama-ia3", "llama-prompt", "llama-prefix", "gpt2-lora",
            "gpt2-dora", "gpt2-ia3", "gpt2-prefix"})
    void adapterSavedByPythonPeftGivesItsLogitsInJava(String config, @TempDir Path tmp) throws Exception {
        String py = python();
        Path inputs = Reference.root().resolve("inputs.json");
        Path adapter = tmp.resolve("adapter");
        Path theirs = tmp.resolve("theirs.safetensors");
        runPython(py, "peft_save.py", model(config), Reference.adapter(config).resolve("adapter_config.json").toString(),
                inputs.toString(), adapter.toString(), theirs.toString());
        Path ours = tmp.resolve("ours.safetensors");
        Run logits = run("logits", "--model", model(config), "--adapter", adapter.toString(), "--input",
                inputs.toString(), "--out", ours.toString());
        assertThat(logits.code()).as(logits.err()).isZero();
        try (SafetensorsFile a = SafetensorsFile.open(ours); SafetensorsFile b = SafetensorsFile.open(theirs)) {
            assertThat(a.info("logits").shape()).isEqualTo(b.info("logits").shape());
            Reference.assertClose(a.toFloatArray("logits"), b.toFloatArray("logits"), config + " from Python peft");
        }
    }

    private static void runPython(String py, String script, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(py,
                Path.of(PythonPeftInteropTest.class.getResource("/python/" + script).toURI()).toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(300, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        System.out.println("python peft: " + out.lines().reduce((a, b) -> b).orElse(""));
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama-lora", "llama-rslora", "llama-lora-all-linear", "llama-dora", "llama-ia3",
            "llama-adalora", "llama-prompt", "llama-prefix", "llama-ptuning", "gpt2-lora", "gpt2-dora", "gpt2-ia3",
            "gpt2-lora-embed-fan-in-fan-out"})
    void adapterTrainedInJavaGivesTheSameLogitsInPythonPeft(String config, @TempDir Path tmp) throws Exception {
        String py = python();
        Path data = CliTest.trainingData(tmp);
        Path adapter = tmp.resolve("adapter");
        Run train = run("train", "--model", model(config), "--config",
                Reference.adapter(config).resolve("adapter_config.json").toString(), "--data", data.toString(),
                "--steps", "5", "--lr", "1e-2", "--quiet", "--out", adapter.toString());
        assertThat(train.code()).as(train.err()).isZero();
        Path inputs = Reference.root().resolve("inputs.json");
        Path ours = tmp.resolve("ours.safetensors");
        Run logits = run("logits", "--model", model(config), "--adapter", adapter.toString(), "--input",
                inputs.toString(), "--out", ours.toString());
        assertThat(logits.code()).as(logits.err()).isZero();

        Path theirs = tmp.resolve("theirs.safetensors");
        runPython(py, "peft_logits.py", model(config), adapter.toString(), inputs.toString(), theirs.toString());
        try (SafetensorsFile a = SafetensorsFile.open(ours); SafetensorsFile b = SafetensorsFile.open(theirs)) {
            assertThat(a.info("logits").shape()).isEqualTo(b.info("logits").shape());
            Reference.assertClose(a.toFloatArray("logits"), b.toFloatArray("logits"), config + " in Python peft");
        }
    }
}
