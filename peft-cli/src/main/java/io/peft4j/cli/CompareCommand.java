package io.peft4j.cli;

import io.peft4j.cli.compare.CompareReport;
import io.peft4j.cli.compare.Comparison;
import io.peft4j.cli.compare.Method;
import io.peft4j.cli.compare.TextComparison;
import io.peft4j.cli.demo.MnistComparison;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "compare", description = "Run several PEFT methods on the same model, data, steps and seed and compare "
        + "them: a table (also compare.md and compare.csv) and the loss curves (loss.png) in --out. Without --model, "
        + "the demo's Fashion-MNIST MLP task, offline.")
final class CompareCommand implements Callable<Integer> {
    @Option(names = "--model", description = "Hugging Face model directory (or cached repo id); needs --data")
    String model;

    @Option(names = "--data", description = "rows as for peft train (causal LM; classification rows for a "
            + "...ForSequenceClassification model)")
    Path data;

    @Option(names = "--eval-data", description = "held-out rows (default: the last 10% of --data)")
    Path evalData;

    @Option(names = "--out", defaultValue = "compare-results", description = "where compare.md, compare.csv, loss.png "
            + "and each method's adapter (adapters/METHOD) go (default ${DEFAULT-VALUE})")
    Path out;

    @Option(names = "--methods", description = "comma-separated subset of: lora, qlora, rslora, dora, ia3, adalora, pissa, "
            + "lora-ga, prompt-tuning, prefix-tuning, p-tuning, full-ft (default: all that apply)")
    String methods;

    @Option(names = "--steps", defaultValue = "100", description = "training steps per method (default ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--lr", description = "learning rate of the LoRA family and IA3 (default 1e-3 on the MLP, 2e-4 on a "
            + "model)")
    Float lr;

    @Option(names = "--prompt-lr", defaultValue = "3e-2", description = "learning rate of prompt/prefix/P-tuning "
            + "(default ${DEFAULT-VALUE})")
    float promptLr;

    @Option(names = "--full-ft-lr", description = "learning rate of full fine-tuning (default 1e-4 on the MLP, 2e-5 on a "
            + "model)")
    Float fullFtLr;

    @Option(names = "--r", defaultValue = "8", description = "LoRA rank (AdaLoRA's target rank) (default ${DEFAULT-VALUE})")
    int r;

    @Option(names = "--alpha", defaultValue = "16", description = "lora_alpha (default ${DEFAULT-VALUE})")
    int alpha;

    @Option(names = "--virtual-tokens", defaultValue = "8", description = "virtual tokens of the prompt-learning "
            + "methods (default ${DEFAULT-VALUE})")
    int virtualTokens;

    @Option(names = "--batch-size", defaultValue = "4", description = "rows per step on a model (default "
            + "${DEFAULT-VALUE}; the MLP uses the demo's 10)")
    int batchSize;

    @Option(names = "--max-length", defaultValue = "128", description = "truncate rows (default ${DEFAULT-VALUE})")
    int maxLength;

    @Option(names = "--seed", defaultValue = "42", description = "random seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--fashion-mnist", paramLabel = "DIR", description = "MLP task: the full Fashion-MNIST IDX files "
            + "(default as peft demo: $FASHION_MNIST_DIR, Debian's package, else the shipped split)")
    Path fashionMnist;

    @Option(names = "--shipped", description = "MLP task: use the shipped 10k split even if the full dataset is installed")
    boolean shipped;

    @Option(names = "--pretrain-batches", defaultValue = "0", description = "MLP task: pre-training batches "
            + "(default: one epoch, as the demo)")
    int pretrainBatches;

    @Option(names = "--limit", paramLabel = "TRAIN,TEST", hidden = true, split = ",",
            description = "MLP task: first TRAIN training and TEST test images only (quick runs)")
    int[] limit;

    @Override
    public Integer call() throws Exception {
        if (steps <= 0 || r <= 0 || batchSize <= 0 || virtualTokens <= 0 || maxLength < 2 || pretrainBatches < 0) {
            throw new IllegalArgumentException("--steps, --r, --batch-size and --virtual-tokens must be > 0, "
                    + "--max-length >= 2 and --pretrain-batches >= 0");
        }
        if ((model == null) != (data == null)) {
            throw new IllegalArgumentException("--model and --data go together (without both, the Fashion-MNIST MLP "
                    + "task runs)");
        }
        if (limit != null && limit.length != 2) {
            throw new IllegalArgumentException("--limit takes TRAIN,TEST");
        }
        Path adapters = out.resolve("adapters");
        List<Comparison.Result> results;
        String title;
        if (model == null) {
            List<Method> ms = methods == null ? MnistComparison.METHODS : Method.parseList(methods);
            title = "peft compare: Fashion-MNIST MLP, worst class, " + steps + " steps";
            System.out.println(title);
            results = MnistComparison.run(new MnistComparison.Options(fashionMnist, shipped, seed, pretrainBatches,
                    steps, lr == null ? 1e-3f : lr, fullFtLr == null ? 1e-4f : fullFtLr, r, alpha, ms,
                    limit == null ? 0 : limit[0], limit == null ? 0 : limit[1]), adapters, System.out);
        } else {
            List<Method> ms = methods == null ? TextComparison.METHODS : Method.parseList(methods);
            title = "peft compare: " + Path.of(model).getFileName() + ", " + steps + " steps";
            System.out.println(title);
            results = TextComparison.run(new TextComparison.Options(model, data, evalData, ms, steps,
                    lr == null ? 2e-4f : lr, promptLr, fullFtLr == null ? 2e-5f : fullFtLr, r, alpha, virtualTokens,
                    batchSize, maxLength, seed), adapters, System.out);
        }
        if (results.isEmpty()) {
            throw new IllegalStateException("no method could run on this model");
        }
        CompareReport report = new CompareReport(title, results);
        System.out.println();
        System.out.print(report.table());
        report.write(out);
        System.out.printf(Locale.ROOT, "%nwrote %s, %s and %s to %s%n", CompareReport.MARKDOWN, CompareReport.CSV,
                CompareReport.CHART, out);
        return 0;
    }
}
