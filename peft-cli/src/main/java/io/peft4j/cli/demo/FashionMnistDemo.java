package io.peft4j.cli.demo;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.peft4j.config.LoraConfig;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;

/**
 * The main demo: LoRA on a small classifier, end to end.
 *
 * <p>Pre-trains an over-sized MLP on Fashion-MNIST, finds the class it gets wrong most often, freezes the
 * model, adds rank-1 LoRA to its three Linear layers and fine-tunes only those on that one class. It then
 * shows that the class improved, how few parameters were trained, that every base weight is bit-identical,
 * and that disabling the adapter gives back the original model's errors exactly.
 */
public final class FashionMnistDemo {
    static final int BATCH = 10;
    static final float LR = 1e-3f;
    static final String LR_TEXT = "1e-3";
    static final int LORA_R = 1;
    static final int LORA_ALPHA = 1;
    static final String[] TARGETS = {"linear1", "linear2", "linear3"};
    /** Evaluation batch: large enough to amortise per-op overhead, small enough to keep activations modest. */
    private static final int EVAL_BATCH = 500;

    private FashionMnistDemo() {}

    /**
     * Settings of one run.
     *
     * @param dataDir directory with the full dataset's four IDX files, or null to auto-detect
     * @param seed seeds weight init, shuffling and LoRA init
     * @param pretrainEpochs epochs of pre-training on the whole training set
     * @param finetuneBatches LoRA fine-tuning batches (of {@value #BATCH}) on the worst class only
     * @param threads libtorch intra-op threads; 0 keeps the engine's setting
     * @param shippedOnly use the shipped 10k split even if the full dataset is installed
     * @param trainLimit use only the first N training images (0 = all); for fast tests
     * @param testLimit use only the first N test images (0 = all); for fast tests
     */
    public record Options(Path dataDir, long seed, int pretrainEpochs, int finetuneBatches, int threads,
            boolean shippedOnly, int trainLimit, int testLimit) {
        public static Options defaults() {
            return new Options(null, 0, 1, 100, 0, false, 0, 0);
        }

        public Options withDataDir(Path v) {
            return new Options(v, seed, pretrainEpochs, finetuneBatches, threads, shippedOnly, trainLimit, testLimit);
        }

        public Options withSeed(long v) {
            return new Options(dataDir, v, pretrainEpochs, finetuneBatches, threads, shippedOnly, trainLimit, testLimit);
        }

        public Options withPretrainEpochs(int v) {
            return new Options(dataDir, seed, v, finetuneBatches, threads, shippedOnly, trainLimit, testLimit);
        }

        public Options withFinetuneBatches(int v) {
            return new Options(dataDir, seed, pretrainEpochs, v, threads, shippedOnly, trainLimit, testLimit);
        }

        public Options withThreads(int v) {
            return new Options(dataDir, seed, pretrainEpochs, finetuneBatches, v, shippedOnly, trainLimit, testLimit);
        }

        public Options withShippedOnly(boolean v) {
            return new Options(dataDir, seed, pretrainEpochs, finetuneBatches, threads, v, trainLimit, testLimit);
        }

        public Options withLimits(int train, int test) {
            return new Options(dataDir, seed, pretrainEpochs, finetuneBatches, threads, shippedOnly, train, test);
        }
    }

    /**
     * What a run measured.
     *
     * @param testPerClass test images per class
     * @param errorsBefore per-class test errors of the pre-trained model
     * @param errorsAfter per-class test errors after LoRA fine-tuning
     * @param errorsDisabled per-class test errors with the adapter disabled (should equal {@code errorsBefore})
     * @param worstClass class with the highest error rate before fine-tuning
     * @param originalParams parameters of the MLP before LoRA
     * @param loraParams parameters LoRA added
     * @param trainableParams parameters trained during fine-tuning
     * @param trainableParametersLine the {@code printTrainableParameters} line
     * @param weightsUnchanged every base tensor bit-identical after fine-tuning
     * @param weightTensorsCompared how many base tensors were compared
     */
    public record Result(String dataSource, int trainSize, int testSize, int[] testPerClass, int[] errorsBefore,
            int[] errorsAfter, int[] errorsDisabled, int worstClass, long originalParams, long loraParams,
            long trainableParams, String trainableParametersLine, boolean weightsUnchanged,
            int weightTensorsCompared, double seconds) {
        public boolean disabledEqualsBefore() {
            return java.util.Arrays.equals(errorsBefore, errorsDisabled);
        }
    }

    public static void main(String[] args) {
        Options o = Options.defaults();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--data" -> o = o.withDataDir(Path.of(args[++i]));
                case "--seed" -> o = o.withSeed(Long.parseLong(args[++i]));
                case "--epochs" -> o = o.withPretrainEpochs(Integer.parseInt(args[++i]));
                case "--finetune-batches" -> o = o.withFinetuneBatches(Integer.parseInt(args[++i]));
                case "--threads" -> o = o.withThreads(Integer.parseInt(args[++i]));
                case "--shipped" -> o = o.withShippedOnly(true);
                default -> {
                    System.err.println("usage: FashionMnistDemo [--data DIR] [--shipped] [--seed N] [--epochs N]"
                            + " [--finetune-batches N] [--threads N]");
                    System.exit(2);
                }
            }
        }
        run(o, System.out);
    }

    public static Result run(Options opts, PrintStream out) {
        long t0 = System.nanoTime();
        FashionMnist.Data data = FashionMnist.load(opts.dataDir(), opts.shippedOnly());
        FashionMnist.Split train = data.train().head(opts.trainLimit());
        FashionMnist.Split test = data.test().head(opts.testLimit());
        setThreads(opts.threads());
        Torch.manualSeed(opts.seed());

        out.println("peft4j demo: LoRA on an over-sized MLP, Fashion-MNIST");
        out.println("=".repeat(78));
        out.printf(Locale.ROOT, "  data      %s%n", data.source());
        if (data.shipped()) {
            out.println("            (the full 60k/10k split is used when given --data DIR, $FASHION_MNIST_DIR,");
            out.println("             or installed by Debian's dataset-fashion-mnist package)");
        }
        if (train.size() != data.train().size() || test.size() != data.test().size()) {
            out.printf(Locale.ROOT, "            limited to the first %,d train and %,d test images%n", train.size(), test.size());
        }
        out.printf(Locale.ROOT, "  model     784-1000-2000-10 MLP, ReLU (linear1, linear2, linear3); seed %d; %d threads%n",
                opts.seed(), Torch.threads());
        out.println();

        try (NDManager manager = Torch.newManager()) {
            OversizedMlp mlp = new OversizedMlp(manager);
            Random rng = new Random(opts.seed());

            // 1. Pre-train every parameter on the whole training set.
            long t = System.nanoTime();
            Pretraining pre = pretrain(mlp, manager, train, opts.pretrainEpochs(), 0, rng);
            out.printf(Locale.ROOT, "1. Pre-train    %d epoch%s, %,d batches of %d, Adam lr %s, all %,d params%n",
                    opts.pretrainEpochs(), opts.pretrainEpochs() == 1 ? "" : "s", pre.steps(), BATCH, LR_TEXT,
                    mlp.numParameters());
            out.printf(Locale.ROOT, "                %.1f s; mean loss of the last %d batches %.3f%n", secs(t),
                    pre.recentBatches(), pre.recentLoss());

            // 2. Evaluate and pick the worst class.
            int[] perClass = countPerClass(test);
            int[] before = evaluate(mlp::forward, manager, test);
            int worst = worstClass(before, perClass);
            out.printf(Locale.ROOT, "2. Evaluate     %,d test images: accuracy %.1f%%; worst class %d %s (%d of %d wrong, %.1f%%)%n",
                    test.size(), 100.0 * (test.size() - sum(before)) / test.size(), worst,
                    FashionMnist.CLASS_NAMES[worst], before[worst], perClass[worst], rate(before[worst], perClass[worst]));

            // 3. Freeze and add LoRA. Snapshot every base tensor first, by name, for the bit-identical check.
            Map<String, float[]> snapshot = new LinkedHashMap<>();
            mlp.namedParameters().forEach((k, p) -> snapshot.put(k, p.data().toFloatArray()));
            long originalParams = mlp.numParameters();
            PeftModel peft = attachLora(mlp);
            long allParams = peft.baseModel().numParameters();
            long loraParams = allParams - originalParams;
            List<Param> trainable = peft.trainableParameters();
            long trainableParams = trainable.stream().mapToLong(Param::numel).sum();
            String line = peft.trainableParametersLine();
            out.printf(Locale.ROOT, "3. LoRA         r=%d, alpha=%d on %s; base model frozen%n", LORA_R, LORA_ALPHA,
                    String.join(", ", TARGETS));
            out.printf(Locale.ROOT, "                original params  %,11d%n", originalParams);
            out.printf(Locale.ROOT, "                LoRA params      %,11d   = r*(784+1000) + r*(1000+2000) + r*(2000+10), r=%d%n",
                    loraParams, LORA_R);
            out.printf(Locale.ROOT, "                %s%n", line);

            // 4. Fine-tune the adapter on the worst class only.
            t = System.nanoTime();
            int[] classIdx = indicesOf(train, worst);
            if (classIdx.length == 0) {
                throw new IllegalStateException("no training images of class " + worst);
            }
            AdamW loraAdam = AdamW.builder().lr(LR).build();
            int[] classOrder = shuffled(classIdx, rng);
            int pos = 0;
            for (int b = 0; b < opts.finetuneBatches(); b++) {
                int[] idx = new int[Math.min(BATCH, classIdx.length)];
                for (int i = 0; i < idx.length; i++) {
                    if (pos == classOrder.length) {
                        // Fewer images of the class than 100 batches need: reshuffle and go round again.
                        classOrder = shuffled(classIdx, rng);
                        pos = 0;
                    }
                    idx[i] = classOrder[pos++];
                }
                trainStep(peft::forward, manager, train, idx, loraAdam, trainable);
            }
            out.printf(Locale.ROOT, "4. Fine-tune    %d batches of %d, only class %d %s (%,d training images), Adam lr %s,%n",
                    opts.finetuneBatches(), BATCH, worst, FashionMnist.CLASS_NAMES[worst], classIdx.length, LR_TEXT);
            out.printf(Locale.ROOT, "                only the %,d LoRA params; %.1f s%n", trainableParams, secs(t));
            out.println();

            int[] after = evaluate(peft::forward, manager, test);
            int[] disabled;
            try (PeftModel.AdapterScope off = peft.disableAdapter()) {
                disabled = evaluate(peft::forward, manager, test);
            }

            printErrorTable(out, test.size(), perClass, before, after, disabled, worst);
            out.println();
            boolean unchanged = printWeightCheck(out, snapshot, peft.baseModel());
            int compared = snapshot.size();

            boolean sameAsBefore = java.util.Arrays.equals(before, disabled);
            out.printf(Locale.ROOT, "Adapter disabled: per-class errors %s the \"before\" column%n",
                    sameAsBefore ? "equal" : "DIFFER FROM");
            out.println();
            double seconds = secs(t0);
            out.printf(Locale.ROOT, "Summary: %s errors %d -> %d (%.1f%% -> %.1f%%) training %,d LoRA params (%.2f%%);"
                    + " base weights %s; adapter off = before: %s; %.1f s%n",
                    FashionMnist.CLASS_NAMES[worst], before[worst], after[worst],
                    rate(before[worst], perClass[worst]), rate(after[worst], perClass[worst]), trainableParams,
                    100.0 * trainableParams / allParams, unchanged ? "bit-identical" : "CHANGED",
                    sameAsBefore ? "yes" : "NO", seconds);
            return new Result(data.source(), train.size(), test.size(), perClass, before, after, disabled, worst,
                    originalParams, loraParams, trainableParams, line, unchanged, compared, seconds);
        }
    }

    /** What pre-training did: optimizer steps, and the mean loss of its last (up to 100) batches. */
    record Pretraining(int steps, int recentBatches, double recentLoss) {}

    /**
     * Trains every parameter of {@code mlp} for {@code epochs} passes over {@code train} in shuffled batches of
     * {@value #BATCH} (Adam, lr {@value #LR_TEXT}), stopping after {@code maxBatches} batches when that is > 0.
     */
    static Pretraining pretrain(OversizedMlp mlp, NDManager manager, FashionMnist.Split train, int epochs,
                                int maxBatches, Random rng) {
        AdamW adam = AdamW.builder().lr(LR).build();
        List<Param> all = new ArrayList<>(mlp.namedParameters().values());
        double recentLoss = 0;
        int recent = 0;
        int batchesPerEpoch = (train.size() + BATCH - 1) / BATCH;
        int total = maxBatches > 0 ? Math.min(maxBatches, epochs * batchesPerEpoch) : epochs * batchesPerEpoch;
        int[] order = null;
        for (int step = 0; step < total; step++) {
            int b = step % batchesPerEpoch;
            if (b == 0) {
                order = permutation(train.size(), rng);
            }
            int[] idx = slice(order, b * BATCH, Math.min(train.size(), (b + 1) * BATCH));
            float loss = trainStep(mlp::forward, manager, train, idx, adam, all);
            if (step >= total - 100) {
                recentLoss += loss;
                recent++;
            }
        }
        return new Pretraining(total, recent, recent == 0 ? Double.NaN : recentLoss / recent);
    }

    /**
     * The LoRA step, through the same {@code getPeftModel} machinery used for transformers: freezes
     * {@code mlp} and wraps {@code linear1..3} in place with rank-{@value #LORA_R} LoRA layers
     * ({@code A} Kaiming-uniform, {@code B} zero, so the model's output is unchanged until training).
     */
    static PeftModel attachLora(OversizedMlp mlp) {
        LoraConfig cfg = LoraConfig.builder().r(LORA_R).loraAlpha(LORA_ALPHA).targetModules(TARGETS).build();
        return PeftModel.getPeftModel(mlp, cfg);
    }

    // ---- training and evaluation --------------------------------------------------------------------

    private static float trainStep(UnaryOperator<NDArray> forward, NDManager manager, FashionMnist.Split split,
            int[] idx, AdamW optimizer, List<Param> params) {
        // The batch is built inside TrainStep's scope so its arrays are freed with the step's intermediates.
        return TrainStep.run(() -> loss(forward, manager, split, idx), optimizer, params).loss();
    }

    /** Cross-entropy of {@code forward} on the images {@code idx} of {@code split} against their labels. */
    static NDArray loss(UnaryOperator<NDArray> forward, NDManager manager, FashionMnist.Split split, int[] idx) {
        return F.crossEntropy(forward.apply(images(manager, split, idx)), manager.create(labels(split, idx)), -100);
    }

    /** Per-class error counts of {@code forward} on {@code split}, without autograd and with flat memory. */
    static int[] evaluate(UnaryOperator<NDArray> forward, NDManager manager, FashionMnist.Split split) {
        int[] errors = new int[FashionMnist.NUM_CLASSES];
        try (NoGrad ng = NoGrad.enter()) {
            for (int from = 0; from < split.size(); from += EVAL_BATCH) {
                int[] idx = range(from, Math.min(split.size(), from + EVAL_BATCH));
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    long[] predicted = forward.apply(images(manager, split, idx)).argMax(1).toLongArray();
                    for (int i = 0; i < idx.length; i++) {
                        int label = split.labels()[idx[i]];
                        if (predicted[i] != label) {
                            errors[label]++;
                        }
                    }
                }
            }
        }
        return errors;
    }

    /** Pixels scaled to [0, 1], shape {@code [n, 784]}. */
    static NDArray images(NDManager manager, FashionMnist.Split split, int[] idx) {
        float[] x = new float[idx.length * FashionMnist.PIXELS];
        byte[] px = split.pixels();
        for (int i = 0; i < idx.length; i++) {
            int src = idx[i] * FashionMnist.PIXELS;
            int dst = i * FashionMnist.PIXELS;
            for (int j = 0; j < FashionMnist.PIXELS; j++) {
                x[dst + j] = (px[src + j] & 0xff) / 255f;
            }
        }
        return manager.create(x, new Shape(idx.length, FashionMnist.PIXELS));
    }

    static long[] labels(FashionMnist.Split split, int[] idx) {
        long[] y = new long[idx.length];
        for (int i = 0; i < idx.length; i++) {
            y[i] = split.labels()[idx[i]];
        }
        return y;
    }

    // ---- checks and printing ------------------------------------------------------------------------

    /** Compares every snapshotted tensor bit for bit with its current value; prints one row per tensor. */
    private static boolean printWeightCheck(PrintStream out, Map<String, float[]> snapshot, Module model) {
        out.println("Base weights after fine-tuning vs. a copy taken before LoRA (bit-for-bit):");
        Map<String, Param> now = model.namedParameters();
        boolean allSame = true;
        for (Map.Entry<String, float[]> e : snapshot.entrySet()) {
            String name = e.getKey();
            // LoRA moves each target's own parameters under base_layer, as HF does.
            String moved = name.substring(0, name.lastIndexOf('.')) + ".base_layer" + name.substring(name.lastIndexOf('.'));
            String found = now.containsKey(name) ? name : now.containsKey(moved) ? moved : null;
            float[] was = e.getValue();
            int differing = -1;
            String shape = "?";
            if (found != null) {
                NDArray cur = now.get(found).data();
                shape = cur.getShape().toString();
                differing = countDifferentBits(was, cur.toFloatArray());
            }
            boolean same = differing == 0;
            allSame &= same;
            out.printf(Locale.ROOT, "  %-26s %-12s %,10d values   %s%n", found == null ? name : found, shape, was.length,
                    found == null ? "MISSING" : same ? "identical" : differing + " values differ");
        }
        return allSame;
    }

    private static int countDifferentBits(float[] a, float[] b) {
        if (a.length != b.length) {
            return Math.max(a.length, b.length);
        }
        int n = 0;
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
                n++;
            }
        }
        return n;
    }

    private static void printErrorTable(PrintStream out, int testSize, int[] perClass, int[] before, int[] after,
            int[] disabled, int worst) {
        out.printf(Locale.ROOT, "Test errors per class (%,d test images)%n", testSize);
        String header = String.format(Locale.ROOT, "  %-2s %-12s %6s   %14s   %14s   %14s", "#", "class", "images",
                "before", "after LoRA", "adapter off");
        String rule = "  " + "-".repeat(header.length() - 2);
        out.println(header);
        out.println(rule);
        for (int c = 0; c < FashionMnist.NUM_CLASSES; c++) {
            out.printf(Locale.ROOT, "  %-2d %-12s %6d   %s   %s   %s%s%n", c, FashionMnist.CLASS_NAMES[c], perClass[c],
                    cell(before[c], perClass[c]), cell(after[c], perClass[c]), cell(disabled[c], perClass[c]),
                    c == worst ? "  <- fine-tuned" : "");
        }
        out.println(rule);
        out.printf(Locale.ROOT, "  %-2s %-12s %6d   %s   %s   %s%n", "", "all", testSize, cell(sum(before), testSize),
                cell(sum(after), testSize), cell(sum(disabled), testSize));
        if (sum(after) > sum(before)) {
            out.printf(Locale.ROOT, "  (trained on %s only, the adapter pulls other classes towards it; disabled, it gives back"
                    + " the base model)%n", FashionMnist.CLASS_NAMES[worst]);
        }
    }

    /** {@code "  159   75.7%"}: 14 characters, right-aligned under the header. */
    private static String cell(int errors, int total) {
        return String.format(Locale.ROOT, "%6d  %5.1f%%", errors, rate(errors, total));
    }

    // ---- small helpers ------------------------------------------------------------------------------

    /** Highest error rate; ties go to the lower class id so the choice is deterministic. */
    static int worstClass(int[] errors, int[] perClass) {
        int worst = 0;
        for (int c = 1; c < errors.length; c++) {
            if (rate(errors[c], perClass[c]) > rate(errors[worst], perClass[worst])) {
                worst = c;
            }
        }
        return worst;
    }

    static void setThreads(int threads) {
        if (threads > 0) {
            System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
            Torch.engine();
            // The property only counts while the engine loads; this also covers an engine already running.
            JniUtils.setNumThreads(threads);
        }
    }

    static int[] countPerClass(FashionMnist.Split split) {
        int[] n = new int[FashionMnist.NUM_CLASSES];
        for (byte l : split.labels()) {
            n[l]++;
        }
        return n;
    }

    static int[] indicesOf(FashionMnist.Split split, int cls) {
        return java.util.stream.IntStream.range(0, split.size()).filter(i -> split.labels()[i] == cls).toArray();
    }

    private static int[] permutation(int n, Random rng) {
        return shuffled(range(0, n), rng);
    }

    private static int[] shuffled(int[] a, Random rng) {
        int[] p = a.clone();
        for (int i = p.length - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int tmp = p[i];
            p[i] = p[j];
            p[j] = tmp;
        }
        return p;
    }

    private static int[] range(int from, int to) {
        int[] r = new int[to - from];
        for (int i = 0; i < r.length; i++) {
            r[i] = from + i;
        }
        return r;
    }

    private static int[] slice(int[] a, int from, int to) {
        return java.util.Arrays.copyOfRange(a, from, to);
    }

    private static int sum(int[] a) {
        int s = 0;
        for (int v : a) {
            s += v;
        }
        return s;
    }

    private static double rate(int errors, int total) {
        return total == 0 ? 0 : 100.0 * errors / total;
    }

    private static double secs(long since) {
        return (System.nanoTime() - since) / 1e9;
    }
}
