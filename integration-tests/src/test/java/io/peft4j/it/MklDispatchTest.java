package io.peft4j.it;

import io.peft4j.nn.Torch;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The library the {@code peft} launcher preloads on AMD CPUs (README: "MKL on AMD CPUs") is compiled from its
 * source, preloaded into a child JVM, and must leave the numbers alone: a float32 GEMM as exact as float32 allows,
 * and HF's reference logits. Skipped where no C compiler is installed.
 */
class MklDispatchTest {
    static final Path SOURCE = Path.of("..", "peft-cli", "src", "main", "native", "mkl_intel_dispatch.c");

    @Test
    void preloadedDispatchLibraryKeepsGemmAndHfParity(@TempDir Path tmp) throws Exception {
        Optional<Path> cc = compiler();
        assumeTrue(cc.isPresent(), "no C compiler (cc/gcc) on PATH: the launcher would run without the library");
        assertThat(SOURCE).exists();
        Path so = tmp.resolve(Torch.MKL_DISPATCH_LIBRARY);
        Process build = new ProcessBuilder(cc.get().toString(), "-shared", "-fPIC", "-O2", "-o", so.toString(),
                SOURCE.toString()).redirectErrorStream(true).start();
        String buildLog = new String(build.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(build.waitFor()).as(buildLog).isZero();

        Path out = tmp.resolve("logits.safetensors");
        Path childLog = tmp.resolve("child.log");
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), MklDispatchProbe.class.getName(),
                "logits", "--model", Reference.model("llama").toString(),
                "--adapter", Reference.adapter("llama-lora").toString(),
                "--input", Reference.root().resolve("inputs.json").toString(), "--out", out.toString())
                .redirectErrorStream(true).redirectOutput(childLog.toFile());
        pb.environment().put("LD_PRELOAD", so.toString());
        Process child = pb.start();
        boolean done = child.waitFor(5, TimeUnit.MINUTES);
        if (!done) {
            child.destroyForcibly();
        }
        String log = Files.readString(childLog);
        assertThat(done).as(log).isTrue();
        assertThat(child.exitValue()).as(log).isZero();

        assertThat(log).as("the child JVM maps the library").contains("preloaded=true");
        assertThat(log).contains("logits_exit=0");
        double gemmError = Double.parseDouble(log.replaceAll("(?s).*gemm_error=(\\S+).*", "$1"));
        assertThat(gemmError).as(log).isLessThan(2e-6);
        try (SafetensorsFile f = SafetensorsFile.open(out)) {
            Reference.assertClose(f.toFloatArray("logits"), Reference.tensor("llama-lora", "logits"), "preloaded MKL");
        }
    }

    @Test
    void thisJvmDoesNotReportTheLibrary() {
        // Surefire's JVM starts without LD_PRELOAD (unless a developer exports it): the check must not be constant.
        assumeTrue(System.getenv("LD_PRELOAD") == null, "LD_PRELOAD is set for the test run");
        assertThat(Torch.mklDispatchPreloaded()).isFalse();
        assertThat(MklDispatchProbe.gemmError(64, 128, 96)).isLessThan(2e-6);
    }

    private static Optional<Path> compiler() {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String name : List.of("cc", "gcc")) {
            try (Stream<String> dirs = Stream.of(path.split(":"))) {
                Optional<Path> hit = dirs.map(d -> Path.of(d, name)).filter(Files::isExecutable).findFirst();
                if (hit.isPresent()) {
                    return hit;
                }
            }
        }
        return Optional.empty();
    }
}
