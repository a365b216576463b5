package io.peft4j.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "demo", description = "LoRA on a Fashion-MNIST MLP: fix the class it recognises worst without touching its weights.")
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--data", description = "directory with the full Fashion-MNIST IDX files (default: shipped 10k test split, or the Debian package)")
    Path data;

    @Option(names = "--seed", defaultValue = "0")
    long seed;

    @Override
    public Integer call() throws Exception {
        throw new UnsupportedOperationException("demo not wired yet");
    }
}
