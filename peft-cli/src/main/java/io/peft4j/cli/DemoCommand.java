package io.peft4j.cli;

import io.peft4j.cli.demo.FashionMnistDemo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "demo", description = "LoRA on a Fashion-MNIST MLP: fix the class it recognises worst without touching its weights.")
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--data", description = "directory with the full Fashion-MNIST IDX files (default: $FASHION_MNIST_DIR, "
            + "Debian's dataset-fashion-mnist, else the shipped 10k test split)")
    Path data;

    @Option(names = "--shipped", description = "use the 10k split shipped with peft4j even if the full dataset is installed")
    boolean shipped;

    @Option(names = "--seed", defaultValue = "0", description = "random seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--epochs", defaultValue = "1", description = "pre-training epochs (default ${DEFAULT-VALUE})")
    int epochs;

    @Option(names = "--finetune-batches", defaultValue = "100", description = "LoRA fine-tuning batches (default ${DEFAULT-VALUE})")
    int finetuneBatches;

    @Override
    public Integer call() throws Exception {
        if (epochs <= 0 || finetuneBatches <= 0) {
            throw new IllegalArgumentException("--epochs and --finetune-batches must be > 0");
        }
        FashionMnistDemo.Options o = FashionMnistDemo.Options.defaults()
                .withDataDir(data)
                .withShippedOnly(shipped)
                .withSeed(seed)
                .withPretrainEpochs(epochs)
                .withFinetuneBatches(finetuneBatches);
        FashionMnistDemo.run(o, System.out);
        return 0;
    }
}
