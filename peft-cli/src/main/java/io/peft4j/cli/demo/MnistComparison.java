package io.peft4j.cli.demo;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import io.peft4j.cli.compare.Comparison;
import io.peft4j.cli.compare.Method;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.quant.Quantization;
import io.peft4j.nn.train.LrSchedule;
import io.peft4j.nn.train.TrainingArguments;
import io.peft4j.tuners.lora.LoraGA;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;

/**
 * {@code peft compare}'s embedded default: the demo's task for every method that applies to an MLP. The
 * over-sized MLP is pre-trained once as in the demo; each method then starts from a copy of it and fine-tunes on
 * the class the MLP recognises worst, with the same steps, batches, learning rate and seed. Evaluation: loss and
 * accuracy on that class's test images, and the accuracy over all classes (what the fine-tuning costs the rest).
 */
public final class MnistComparison {
    /** The methods that apply to a plain MLP (prompt learning needs a transformer). */
    public static final List<Method> METHODS = List.of(Method.LORA, Method.QLORA, Method.RSLORA, Method.DORA,
            Method.IA3, Method.ADALORA, Method.PISSA, Method.LORA_GA, Method.FULL_FT);
    static final int LORA_GA_BATCHES = 8;

    private MnistComparison() {}

    /**
     * @param pretrainBatches pre-training batches (0: one epoch, as the demo)
     * @param fullFtLr learning rate of full fine-tuning (all weights move, so it is usually lower)
     * @param trainLimit / testLimit first N images only (0 = all), for quick runs
     */
    public record Options(Path dataDir, boolean shippedOnly, long seed, int pretrainBatches, int steps, float lr,
                          float fullFtLr, int r, int alpha, List<Method> methods, int trainLimit, int testLimit) {}

    public static List<Comparison.Result> run(Options o, Path adaptersDir, PrintStream out) throws IOException {
        for (Method m : o.methods()) {
            if (!METHODS.contains(m)) {
                throw new IllegalArgumentException("--methods: " + m.cliName() + " does not apply to the Fashion-MNIST "
                        + "MLP (it needs a transformer: give --model DIR --data FILE); MLP methods: "
                        + String.join(", ", METHODS.stream().map(Method::cliName).toList()));
            }
        }
        FashionMnist.Data data = FashionMnist.load(o.dataDir(), o.shippedOnly());
        FashionMnist.Split train = data.train().head(o.trainLimit());
        FashionMnist.Split test = data.test().head(o.testLimit());
        out.printf(Locale.ROOT, "data: %s (%,d train / %,d test images)%n", data.source(), train.size(), test.size());
        Torch.manualSeed(o.seed());
        List<Comparison.Result> results = new ArrayList<>();
        try (NDManager manager = Torch.newManager()) {
            OversizedMlp mlp = new OversizedMlp(manager);
            long t = System.nanoTime();
            FashionMnistDemo.Pretraining pre = FashionMnistDemo.pretrain(mlp, manager, train, 1, o.pretrainBatches(),
                    new Random(o.seed()));
            int[] perClass = FashionMnistDemo.countPerClass(test);
            int[] errors = FashionMnistDemo.evaluate(mlp::forward, manager, test);
            int worst = FashionMnistDemo.worstClass(errors, perClass);
            out.printf(Locale.ROOT, "pre-trained the 784-1000-2000-10 MLP: %,d batches of %d in %.1f s (loss %.3f); "
                            + "all-class accuracy %.4f; worst class %d %s (%d of %d test images wrong)%n", pre.steps(),
                    FashionMnistDemo.BATCH, (System.nanoTime() - t) / 1e9, pre.recentLoss(),
                    1.0 - (double) Arrays.stream(errors).sum() / test.size(), worst, FashionMnist.CLASS_NAMES[worst],
                    errors[worst], perClass[worst]);
            List<Integer> rows = boxed(FashionMnistDemo.indicesOf(train, worst));
            int[] testOfClass = FashionMnistDemo.indicesOf(test, worst);
            if (rows.isEmpty() || testOfClass.length == 0) {
                throw new IllegalStateException("no images of class " + worst + " in the (limited) data");
            }
            out.printf(Locale.ROOT, "each method: %d steps of %d images of class %s only, seed %d%n%n", o.steps(),
                    FashionMnistDemo.BATCH, FashionMnist.CLASS_NAMES[worst], o.seed());
            Method.Settings settings = new Method.Settings(o.r(), o.alpha(), List.of(FashionMnistDemo.TARGETS),
                    List.of(FashionMnistDemo.TARGETS), List.of("linear2", "linear3"), o.steps(), 0, null);
            for (Method method : o.methods()) {
                // Each method gets its own copy of the pre-trained MLP in a sub-manager, freed with its adapter and
                // optimizer state before the next method starts.
                Comparison.Result r = Comparison.attempt(method.cliName(), out, () -> {
                    try (NDManager sub = manager.newSubManager()) {
                        Torch.manualSeed(o.seed());
                        OversizedMlp copy = new OversizedMlp(sub);
                        copy.loadStateDict(mlp.stateDict(), true);
                        return runMethod(method, settings, copy, sub, o, train, test, rows, testOfClass,
                                adaptersDir.resolve(method.cliName()), out);
                    }
                });
                if (r != null) {
                    results.add(r);
                }
            }
        }
        return results;
    }

    private static Comparison.Result runMethod(Method method, Method.Settings settings, Module model, NDManager m,
                                               Options o, FashionMnist.Split train, FashionMnist.Split test,
                                               List<Integer> rows, int[] testOfClass, Path adapterDir, PrintStream out)
            throws IOException {
        PeftConfig cfg = method.config(settings);
        if (method == Method.QLORA) {
            Quantization.quantize(model, BitsAndBytesConfig.nf4());
        }
        UnaryOperator<NDArray> forward = model::forward;
        if (cfg != null) {
            if (method == Method.LORA_GA) {
                // Gradients estimated on the first batches of the fine-tuning data, as peft's example does.
                Module base = model;
                LoraGA.preprocess(base, (LoraConfig) cfg, LORA_GA_BATCHES, i -> batchLoss(base::forward, m, train, rows,
                        i * FashionMnistDemo.BATCH), 1);
            }
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            model = peft;
            forward = peft::forward;
        }
        UnaryOperator<NDArray> fwd = forward;
        float lr = method == Method.FULL_FT ? o.fullFtLr() : o.lr();
        TrainingArguments args = TrainingArguments.builder().learningRate(lr).lrSchedule(LrSchedule.CONSTANT)
                .maxSteps(o.steps()).batchSize(FashionMnistDemo.BATCH).loggingSteps(1).seed(o.seed()).maxGradNorm(0)
                .build();
        return Comparison.run(method.cliName(), method.settings(settings), model, args, rows,
                batch -> FashionMnistDemo.loss(fwd, m, train, ints(batch)),
                batch -> (long) batch.size() * FashionMnist.PIXELS,
                () -> metrics(fwd, m, test, testOfClass), adapterDir, out);
    }

    /** The loss of the {@code from}-th image onwards of the (cycled) class rows, one batch. */
    private static NDArray batchLoss(UnaryOperator<NDArray> forward, NDManager m, FashionMnist.Split split,
                                     List<Integer> rows, int from) {
        int[] idx = new int[FashionMnistDemo.BATCH];
        for (int i = 0; i < idx.length; i++) {
            idx[i] = rows.get((from + i) % rows.size());
        }
        return FashionMnistDemo.loss(forward, m, split, idx);
    }

    private static Map<String, Double> metrics(UnaryOperator<NDArray> forward, NDManager m, FashionMnist.Split test,
                                               int[] classIdx) {
        Map<String, Double> out = new LinkedHashMap<>();
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray logits = forward.apply(FashionMnistDemo.images(m, test, classIdx));
            NDArray labels = m.create(FashionMnistDemo.labels(test, classIdx));
            out.put("eval_loss", (double) F.crossEntropy(logits, labels, -100).getFloat());
            long[] predicted = logits.argMax(1).toLongArray();
            long[] y = labels.toLongArray();
            int correct = 0;
            for (int i = 0; i < y.length; i++) {
                correct += predicted[i] == y[i] ? 1 : 0;
            }
            out.put("eval_accuracy", (double) correct / y.length);
        }
        int[] errors = FashionMnistDemo.evaluate(forward, m, test);
        out.put("all_classes_accuracy", 1.0 - (double) Arrays.stream(errors).sum() / test.size());
        return out;
    }

    private static List<Integer> boxed(int[] a) {
        return Arrays.stream(a).boxed().toList();
    }

    private static int[] ints(List<Integer> batch) {
        return batch.stream().mapToInt(Integer::intValue).toArray();
    }
}
