package io.peft4j.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

@Command(name = "bench", description = "Benchmark LoRA training and inference on a LLaMA preset.")
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--only", description = "run one measurement")
    String only;

    @Option(names = "--threads", description = "intra-op threads")
    Integer threads;

    @Override
    public Integer call() throws Exception {
        throw new UnsupportedOperationException("bench not wired yet");
    }
}
