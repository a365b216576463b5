package io.peft4j.cli;

import io.peft4j.cli.bench.Bench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "bench", description = "Benchmark base/LoRA/full fine-tuning steps, inference and greedy generation "
        + "on a LLaMA preset (hidden 512, 4 layers, 8 heads, intermediate 1376, vocab 8000, batch 4 x 128, float32; "
        + "generation: 1 prompt of 32 tokens, 64 new tokens, KV cache on and off).")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--only", paramLabel = "NAME[,NAME...]", description = "run only these measurements (in the usual "
            + "order; lora-qv-train with dora-qv-train or adalora-qv-train prints their x_lora ratio): ${COMPLETION-CANDIDATES}",
            completionCandidates = Names.class)
    String only;

    @Option(names = "--threads", paramLabel = "N", description = "intra-op threads (default: $PEFT4J_THREADS, else the number of CPUs)")
    Integer threads;

    @Option(names = "--steps", defaultValue = "10", description = "timed steps per measurement (default ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--warmup", defaultValue = "3", description = "untimed warm-up steps (default ${DEFAULT-VALUE})")
    int warmup;

    @Option(names = "--profile", paramLabel = "DIR", description = "write libtorch's profiler trace of each forward and "
            + "train measurement's timed steps to DIR (Chrome trace JSON: per-op times and shapes; slows those steps)")
    Path profile;

    @Override
    public Integer call() throws IOException {
        if (threads != null && threads < 1) {
            throw new IllegalArgumentException("--threads must be >= 1");
        }
        if (profile != null) {
            Files.createDirectories(profile);
        }
        Bench.run(new Bench.Options().only(only).threads(threads).steps(steps).warmup(warmup).profileDir(profile),
                System.out);
        return 0;
    }

    static final class Names extends java.util.ArrayList<String> {
        Names() {
            super(Bench.NAMES);
        }
    }
}
