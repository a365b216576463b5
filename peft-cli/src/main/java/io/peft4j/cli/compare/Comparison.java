package io.peft4j.cli.compare;

import io.peft4j.cli.bench.Bench;
import io.peft4j.cli.train.ProgressCallback;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.train.Trainer;
import io.peft4j.nn.train.TrainerCallback;
import io.peft4j.nn.train.TrainerState;
import io.peft4j.nn.train.TrainingArguments;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;
import java.util.function.ToLongFunction;

/**
 * Runs one PEFT method of a comparison through the {@link Trainer} and measures it the same way for every method:
 * trainable parameters, adapter file size, peak resident memory, median time per step, the loss curve, the final
 * training loss and the evaluation metrics.
 */
public final class Comparison {
    /** Steps whose losses are averaged into the final training loss (per-step losses are noisy). */
    static final int FINAL_LOSS_WINDOW = 10;

    private Comparison() {}

    /**
     * One method's measurements.
     *
     * @param adapterBytes bytes of the saved {@code adapter_model.safetensors}; for full fine-tuning, of every weight
     *                     in float32 (a full checkpoint)
     * @param peakRssMb the process's peak resident memory while the method ran (base model, adapter, training);
     *                  0 where the kernel gives no figure
     * @param losses training loss of every step
     * @param eval evaluation metrics ({@code eval_loss}, {@code eval_accuracy}, ...), in column order
     */
    public record Result(String method, String settings, float learningRate, long trainableParams, long allParams,
                         long adapterBytes, double peakRssMb, double msPerStep, List<Double> losses,
                         Map<String, Double> eval) {
        public double trainablePercent() {
            return 100.0 * trainableParams / allParams;
        }

        /** Mean loss of the last {@value #FINAL_LOSS_WINDOW} steps (or of all when fewer). */
        public double finalTrainLoss() {
            int n = Math.min(FINAL_LOSS_WINDOW, losses.size());
            return losses.subList(losses.size() - n, losses.size()).stream().mapToDouble(d -> d).average().orElse(Double.NaN);
        }
    }

    /** One method's run, which may throw. */
    @FunctionalInterface
    public interface MethodRun {
        Result run() throws IOException;
    }

    /**
     * Runs one method of a comparison, measured alone ({@link #startMeasurement()} first). A method the model cannot
     * take (an argument or state error) or whose loss diverges is reported on {@code log} and left out, so the other
     * methods still run; null then.
     */
    public static Result attempt(String method, PrintStream log, MethodRun run) throws IOException {
        startMeasurement();
        try {
            return run.run();
        } catch (IllegalArgumentException | UnsupportedOperationException | IllegalStateException e) {
            log.printf(Locale.ROOT, "  %-14s skipped: %s%n", method, e.getMessage());
        } catch (ArithmeticException e) {
            log.printf(Locale.ROOT, "  %-14s failed: %s%n", method, e.getMessage());
        }
        return null;
    }

    /** Frees what can be freed and resets the kernel's peak-RSS mark, so the next method is measured alone. */
    private static void startMeasurement() {
        System.gc();
        Bench.resetPeakRss();
    }

    /**
     * Trains {@code model} (a {@link PeftModel}, or the plain model for full fine-tuning) and measures it; run it
     * inside {@link #attempt}, which starts the measurement before the model is built.
     *
     * @param evaluate the evaluation metrics after training (called in eval mode, no-grad is the caller's)
     * @param adapterDir where the adapter is saved (its {@code adapter_model.safetensors} is measured); ignored
     *                   for full fine-tuning
     */
    public static <E> Result run(String method, String settings, Module model, TrainingArguments args, List<E> rows,
                                 Trainer.BatchLoss<E> loss, ToLongFunction<List<E>> tokens,
                                 Supplier<Map<String, Double>> evaluate, Path adapterDir, PrintStream log)
            throws IOException {
        StepRecorder rec = new StepRecorder(log, method);
        Trainer.Builder<E> b = Trainer.<E>builder().model(model).args(args).trainData(rows).loss(loss)
                .tokenCount(tokens).callback(rec);
        if (log != null && System.console() != null) {
            b.callback(new ProgressCallback(System.err, method));
        }
        Trainer<E> trainer = b.build();
        long trainable = 0;
        for (Param p : trainer.trainableParameters().values()) {
            trainable += p.numel();
        }
        long all = model instanceof PeftModel pm ? pm.getNbTrainableParameters()[1] : model.numParameters();
        trainer.train();
        model.eval();
        Map<String, Double> eval;
        try {
            eval = evaluate.get();
        } finally {
            model.train(true);
        }
        double peak = Bench.readStatusMb("VmHWM");
        long bytes;
        if (model instanceof PeftModel pm) {
            pm.saveAdapter(adapterDir);
            bytes = Files.size(adapterDir.resolve("adapter_model.safetensors"));
        } else {
            bytes = 4L * model.numParameters();
        }
        return new Result(method, settings, args.learningRate(), trainable, all, bytes, peak, median(rec.stepMs),
                rec.losses, eval);
    }

    static double median(List<Double> xs) {
        if (xs.isEmpty()) {
            return Double.NaN;
        }
        double[] a = xs.stream().mapToDouble(d -> d).sorted().toArray();
        int n = a.length;
        return n % 2 == 1 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
    }

    /** Per-step loss (logging every step) and wall time between step ends. */
    private static final class StepRecorder implements TrainerCallback {
        final List<Double> losses = new ArrayList<>();
        final List<Double> stepMs = new ArrayList<>();
        private final PrintStream log;
        private final String method;
        private long last;

        StepRecorder(PrintStream log, String method) {
            this.log = log;
            this.method = method;
        }

        @Override
        public void onTrainBegin(TrainerState state) {
            last = System.nanoTime();
        }

        @Override
        public void onStepEnd(TrainerState state) {
            long now = System.nanoTime();
            stepMs.add((now - last) / 1e6);
            last = now;
        }

        @Override
        public void onLog(TrainerState s, Map<String, Double> logs) {
            losses.add(logs.get("loss"));
            if (log != null && (s.globalStep() == s.totalSteps() || s.globalStep() % 25 == 0)) {
                log.printf(Locale.ROOT, "  %-14s step %d/%d loss=%.4f%n", method, s.globalStep(), s.totalSteps(),
                        logs.get("loss"));
            }
        }
    }

    /** Ordered union of the evaluation metric names of {@code results}. */
    static List<String> evalColumns(List<Result> results) {
        Map<String, Boolean> cols = new LinkedHashMap<>();
        results.forEach(r -> r.eval().keySet().forEach(k -> cols.put(k, true)));
        return new ArrayList<>(cols.keySet());
    }
}
