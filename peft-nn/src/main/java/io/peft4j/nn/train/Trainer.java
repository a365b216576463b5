package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.peft4j.nn.AtomicDirectory;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.LayerNorm;
import io.peft4j.nn.layers.RMSNorm;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.ToLongFunction;
import java.util.stream.Stream;

/**
 * A training loop as dependable as HF's {@code Trainer}: AdamW with a warm-up + decay schedule, gradient
 * accumulation, global-norm clipping, no weight decay on biases and norms, evaluation, logging, callbacks and
 * checkpoints that resume to exactly the run that was not interrupted.
 *
 * <p>Determinism: the rows of epoch {@code e} are visited in the permutation {@code shuffle(rows, seed + e)}, and
 * libtorch's generator (dropout) is reseeded from {@code (seed, micro-batch index)} before every micro-batch, so
 * the random state at any step is a function of the step: a checkpoint needs only the step, the trainable
 * weights and the optimizer state. An optimizer step accumulates {@code gradient_accumulation_steps} micro-batches
 * (the epoch's last step may have fewer), each loss scaled by {@code 1 / micro-batches in the step}.
 *
 * <p>A checkpoint directory {@code checkpoint-<step>} holds {@code trainable.safetensors} (the trainable
 * parameters by name), {@code optimizer.safetensors} (moments and step counts), {@code trainer_state.json}, and
 * whatever the {@link CheckpointWriter} adds (a PEFT adapter in the HF layout); it is written atomically.
 *
 * @param <E> one training row
 */
public final class Trainer<E> {
    /** The scalar training loss of a batch, computed with autograd recording. */
    @FunctionalInterface
    public interface BatchLoss<E> {
        NDArray loss(List<E> batch);
    }

    /** Evaluation metrics of the evaluation rows (runs under no-grad). */
    @FunctionalInterface
    public interface Evaluator<E> {
        Map<String, Double> evaluate(List<E> rows);
    }

    /** Adds model files (e.g. the adapter) to a checkpoint being written into {@code dir}. */
    @FunctionalInterface
    public interface CheckpointWriter {
        void write(Path dir) throws IOException;
    }

    /** Builds the optimizer for the trainable parameters (e.g. LoRA+'s parameter groups). */
    @FunctionalInterface
    public interface OptimizerFactory {
        AdamW create(TrainingArguments args, Map<String, Param> trainable);
    }

    static final String TRAINABLE_FILE = "trainable.safetensors";
    static final String OPTIMIZER_FILE = "optimizer.safetensors";
    static final String STATE_FILE = "trainer_state.json";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private final Module model;
    private final TrainingArguments args;
    private final List<E> trainRows;
    private final List<E> evalRows;
    private final BatchLoss<E> loss;
    private final ToLongFunction<List<E>> tokenCount;
    private final Evaluator<E> evaluator;
    private final List<TrainerCallback> callbacks;
    private final CheckpointWriter checkpointWriter;
    private final Map<String, Param> trainable;
    private final AdamW optimizer;
    private final TrainerState state = new TrainerState();

    private Trainer(Builder<E> b) {
        if (b.model == null || b.loss == null || b.trainRows == null) {
            throw new IllegalArgumentException("Trainer needs a model, training rows and a loss");
        }
        if (b.trainRows.isEmpty()) {
            throw new IllegalArgumentException("Trainer: the training data is empty");
        }
        this.model = b.model;
        this.args = b.args;
        this.trainRows = List.copyOf(b.trainRows);
        this.evalRows = b.evalRows == null ? List.of() : List.copyOf(b.evalRows);
        this.loss = b.loss;
        this.tokenCount = b.tokenCount == null ? List::size : b.tokenCount;
        this.evaluator = b.evaluator;
        this.checkpointWriter = b.checkpointWriter;
        List<TrainerCallback> cbs = new ArrayList<>();
        if (b.model instanceof TrainerCallback.Provider p) {
            cbs.addAll(p.trainerCallbacks());
        }
        cbs.addAll(b.callbacks);
        this.callbacks = List.copyOf(cbs);
        Map<String, Param> t = new LinkedHashMap<>();
        model.namedParameters().forEach((k, p) -> {
            if (p.requiresGrad()) {
                t.put(k, p);
            }
        });
        if (t.isEmpty()) {
            throw new IllegalArgumentException("Trainer: the model has no trainable parameters");
        }
        this.trainable = Collections.unmodifiableMap(t);
        this.optimizer = b.optimizerFactory != null ? b.optimizerFactory.create(args, trainable)
                : defaultOptimizer(model, args, trainable);
    }

    public static <E> Builder<E> builder() {
        return new Builder<>();
    }

    /**
     * AdamW with the arguments' settings; biases and the weights of LayerNorm / RMSNorm modules get no weight
     * decay (HF's {@code get_decay_parameter_names}).
     */
    public static AdamW defaultOptimizer(Module model, TrainingArguments args, Map<String, Param> trainable) {
        AdamW opt = AdamW.builder().lr(args.learningRate()).betas(args.adamBeta1(), args.adamBeta2())
                .eps(args.adamEpsilon()).weightDecay(args.weightDecay()).maxGradNorm(args.maxGradNorm()).build();
        if (args.weightDecay() > 0) {
            List<Param> noDecay = noDecayParameters(model, trainable);
            if (!noDecay.isEmpty()) {
                opt.paramGroup(noDecay, args.learningRate(), 0f);
            }
        }
        return opt;
    }

    /** Trainable parameters that take no weight decay: names containing {@code bias}, and norm-layer weights. */
    public static List<Param> noDecayParameters(Module model, Map<String, Param> trainable) {
        Map<String, Module> modules = model.namedModules();
        List<Param> out = new ArrayList<>();
        trainable.forEach((name, p) -> {
            int dot = name.lastIndexOf('.');
            Module owner = dot < 0 ? model : modules.get(name.substring(0, dot));
            if (name.contains("bias") || owner instanceof LayerNorm || owner instanceof RMSNorm) {
                out.add(p);
            }
        });
        return out;
    }

    public TrainerState state() {
        return state;
    }

    public AdamW optimizer() {
        return optimizer;
    }

    /** The trainable parameters by name, in module order. */
    public Map<String, Param> trainableParameters() {
        return trainable;
    }

    private static long batchesPerEpoch(TrainingArguments args, int rows) {
        return (rows + args.batchSize() - 1) / args.batchSize();
    }

    /** Optimizer steps per epoch: micro-batches grouped by the accumulation (the last group may be shorter). */
    private static long stepsPerEpoch(TrainingArguments args, int rows) {
        long batches = batchesPerEpoch(args, rows);
        return (batches + args.gradientAccumulationSteps() - 1) / args.gradientAccumulationSteps();
    }

    /** Optimizer steps of the whole run. */
    public long totalSteps() {
        return totalSteps(args, trainRows.size());
    }

    /** Optimizer steps of a run of {@code args} over {@code rows} training rows (before building a trainer). */
    public static long totalSteps(TrainingArguments args, int rows) {
        return args.maxSteps() > 0 ? args.maxSteps() : args.numEpochs() * stepsPerEpoch(args, rows);
    }

    /** Trains from the start. */
    public TrainerState train() {
        return train(null);
    }

    /**
     * Trains, first restoring {@code resumeFrom} (a checkpoint directory written by this trainer) when not null: the
     * run then continues exactly as if it had not been interrupted.
     */
    public TrainerState train(Path resumeFrom) {
        long total = totalSteps();
        long warmup = args.warmupFor(total);
        state.totalSteps = total;
        if (resumeFrom != null) {
            restore(resumeFrom);
        }
        model.train(true);
        callbacks.forEach(c -> c.onTrainBegin(state));
        long perEpoch = stepsPerEpoch(args, trainRows.size());
        long batches = batchesPerEpoch(args, trainRows.size());
        int accumulation = args.gradientAccumulationSteps();
        double logLossSum = 0;
        int logCount = 0;
        long logStartNanos = System.nanoTime();
        long logStartTokens = state.tokensSeen;
        List<Param> params = new ArrayList<>(trainable.values());
        while (state.globalStep < total) {
            long epoch = state.globalStep / perEpoch;
            long first = (state.globalStep % perEpoch) * accumulation;
            long last = Math.min(first + accumulation, batches);
            int[] order = order(epoch);
            double factor = args.lrSchedule().factor(state.globalStep, warmup, total);
            optimizer.setLrFactor(factor);
            double lossSum = 0;
            for (long b = first; b < last; b++) {
                List<E> batch = batch(order, b);
                Torch.manualSeed(microSeed(epoch * batches + b));
                lossSum += TrainStep.backward(() -> loss.loss(batch), 1f / (last - first),
                        " at step " + (state.globalStep + 1));
                state.tokensSeen += tokenCount.applyAsLong(batch);
            }
            float norm = optimizer.update(params);
            state.globalStep++;
            state.epoch = epoch;
            state.lastLoss = lossSum / (last - first);
            state.lastLearningRate = args.learningRate() * factor;
            state.lastGradNorm = norm;
            try {
                for (TrainerCallback c : callbacks) {
                    c.onOptimizerStep(state, params);
                }
            } finally {
                AdamW.zeroGrad(params);
            }
            logLossSum += state.lastLoss;
            logCount++;
            boolean end = state.globalStep == total;
            if (args.loggingSteps() > 0 && (state.globalStep % args.loggingSteps() == 0 || end)) {
                double seconds = (System.nanoTime() - logStartNanos) / 1e9;
                Map<String, Double> logs = new LinkedHashMap<>();
                logs.put("loss", logLossSum / logCount);
                logs.put("learning_rate", state.lastLearningRate);
                logs.put("grad_norm", (double) norm);
                logs.put("epoch", (double) state.globalStep / perEpoch);
                logs.put("tokens_per_s", seconds > 0 ? (state.tokensSeen - logStartTokens) / seconds : 0.0);
                logs.put("step", (double) state.globalStep);
                state.logHistory.add(logs);
                callbacks.forEach(c -> c.onLog(state, logs));
                logLossSum = 0;
                logCount = 0;
                logStartNanos = System.nanoTime();
                logStartTokens = state.tokensSeen;
            }
            if (!evalRows.isEmpty() && ((args.evalSteps() > 0 && state.globalStep % args.evalSteps() == 0) || end)) {
                evaluate();
            }
            if (args.saveSteps() > 0 && args.outputDir() != null && state.globalStep % args.saveSteps() == 0) {
                saveCheckpoint();
            }
            callbacks.forEach(c -> c.onStepEnd(state));
        }
        callbacks.forEach(c -> c.onTrainEnd(state));
        return state;
    }

    private long microSeed(long microBatch) {
        return args.seed() * 1_000_003L + microBatch;
    }

    /** The row order of an epoch: a seeded permutation (or the natural order without shuffling). */
    private int[] order(long epoch) {
        List<Integer> idx = new ArrayList<>(trainRows.size());
        for (int i = 0; i < trainRows.size(); i++) {
            idx.add(i);
        }
        if (args.shuffle()) {
            Collections.shuffle(idx, new Random(args.seed() + epoch));
        }
        return idx.stream().mapToInt(Integer::intValue).toArray();
    }

    private List<E> batch(int[] order, long b) {
        int from = (int) (b * args.batchSize());
        int to = Math.min(from + args.batchSize(), order.length);
        List<E> out = new ArrayList<>(to - from);
        for (int i = from; i < to; i++) {
            out.add(trainRows.get(order[i]));
        }
        return out;
    }

    /**
     * Evaluates on the evaluation rows under no-grad with the model in eval mode: the evaluator's metrics, or
     * {@code eval_loss}, the row-weighted mean of the batch losses.
     */
    public Map<String, Double> evaluate() {
        if (evalRows.isEmpty()) {
            throw new IllegalStateException("Trainer.evaluate: no evaluation rows were given");
        }
        model.eval();
        Map<String, Double> metrics = new LinkedHashMap<>();
        try (NoGrad ng = NoGrad.enter()) {
            if (evaluator != null) {
                evaluator.evaluate(evalRows).forEach((k, v) -> metrics.put(k.startsWith("eval_") ? k : "eval_" + k, v));
            } else {
                double sum = 0;
                for (int from = 0; from < evalRows.size(); from += args.evalBatchSize()) {
                    List<E> batch = evalRows.subList(from, Math.min(from + args.evalBatchSize(), evalRows.size()));
                    try (NDScope scope = new NDScope()) {
                        scope.suppressNotUsedWarning();
                        sum += loss.loss(batch).getFloat() * batch.size();
                    }
                }
                metrics.put("eval_loss", sum / evalRows.size());
            }
        } finally {
            model.train(true);
        }
        metrics.put("step", (double) state.globalStep);
        state.logHistory.add(metrics);
        callbacks.forEach(c -> c.onEvaluate(state, metrics));
        return metrics;
    }

    /** Writes {@code <output_dir>/checkpoint-<step>} atomically and returns it. */
    public Path saveCheckpoint() {
        if (args.outputDir() == null) {
            throw new IllegalStateException("Trainer.saveCheckpoint: TrainingArguments.outputDir is not set");
        }
        Path dir = args.outputDir().resolve("checkpoint-" + state.globalStep);
        try (NDManager m = Torch.newManager()) {
            Map<String, TensorData> weights = new LinkedHashMap<>();
            trainable.forEach((k, p) -> weights.put(k, TensorData.ofNDArray(p.data())));
            Map<String, TensorData> opt = new LinkedHashMap<>();
            optimizer.stateDict(trainable, m).forEach((k, a) -> opt.put(k, TensorData.ofNDArray(a)));
            Map<String, Object> json = state.toJson();
            json.put("seed", args.seed());
            json.put("batch_size", args.batchSize());
            json.put("gradient_accumulation_steps", args.gradientAccumulationSteps());
            json.put("train_rows", trainRows.size());
            AtomicDirectory.write(dir, false, tmp -> {
                SafetensorsWriter.write(tmp.resolve(TRAINABLE_FILE), weights, Map.of("format", "pt"));
                SafetensorsWriter.write(tmp.resolve(OPTIMIZER_FILE), opt, Map.of("format", "pt"));
                Files.writeString(tmp.resolve(STATE_FILE), JSON.writeValueAsString(json));
                if (checkpointWriter != null) {
                    checkpointWriter.write(tmp);
                }
            });
        } catch (IOException e) {
            throw new UncheckedIOException("could not write checkpoint " + dir + ": " + e.getMessage(), e);
        }
        callbacks.forEach(c -> c.onSave(state, dir));
        return dir;
    }

    /** The {@code checkpoint-<step>} directory with the highest step under {@code outputDir}, or null. */
    public static Path latestCheckpoint(Path outputDir) {
        if (!Files.isDirectory(outputDir)) {
            return null;
        }
        try (Stream<Path> s = Files.list(outputDir)) {
            return s.filter(p -> p.getFileName().toString().matches("checkpoint-\\d+") && Files.isDirectory(p))
                    .max((a, b) -> Long.compare(stepOf(a), stepOf(b))).orElse(null);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static long stepOf(Path checkpoint) {
        return Long.parseLong(checkpoint.getFileName().toString().substring("checkpoint-".length()));
    }

    private void restore(Path dir) {
        Path stateFile = dir.resolve(STATE_FILE);
        if (!Files.isRegularFile(stateFile)) {
            throw new IllegalArgumentException("not a trainer checkpoint: " + stateFile + " is missing");
        }
        Map<String, Object> json;
        try {
            json = JSON.readValue(stateFile.toFile(), new TypeReference<>() {});
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + stateFile + ": " + e.getMessage(), e);
        }
        requireSame(json, stateFile, "seed", args.seed());
        requireSame(json, stateFile, "batch_size", args.batchSize());
        requireSame(json, stateFile, "gradient_accumulation_steps", args.gradientAccumulationSteps());
        requireSame(json, stateFile, "train_rows", trainRows.size());
        long step = ((Number) json.get("global_step")).longValue();
        if (step > state.totalSteps) {
            throw new IllegalArgumentException(stateFile + ": the checkpoint is at step " + step + ", past this run's "
                    + state.totalSteps + " steps");
        }
        Path weights = dir.resolve(TRAINABLE_FILE);
        try (SafetensorsFile f = SafetensorsFile.open(weights)) {
            for (Map.Entry<String, Param> e : trainable.entrySet()) {
                if (!f.contains(e.getKey())) {
                    throw new IllegalArgumentException(weights + " has no tensor " + e.getKey()
                            + " (the model's trainable parameters differ from the checkpoint's)");
                }
                NDArray w = e.getValue().data();
                NDArray loaded = f.toNDArray(e.getKey(), w.getManager());
                if (!loaded.getShape().equals(w.getShape())) {
                    throw new IllegalArgumentException(weights + ": " + e.getKey() + " has shape " + loaded.getShape()
                            + " but the model's parameter has " + w.getShape());
                }
                e.getValue().setData(loaded);
            }
            for (String name : f.names()) {
                if (!trainable.containsKey(name)) {
                    throw new IllegalArgumentException(weights + " has " + name
                            + ", which is not a trainable parameter of the model");
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + weights + ": " + e.getMessage(), e);
        }
        Path opt = dir.resolve(OPTIMIZER_FILE);
        try (SafetensorsFile f = SafetensorsFile.open(opt); NDManager m = Torch.newManager()) {
            Map<String, NDArray> tensors = new LinkedHashMap<>();
            for (String name : f.names()) {
                tensors.put(name, f.toNDArray(name, m));
            }
            optimizer.loadStateDict(trainable, tensors);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + opt + ": " + e.getMessage(), e);
        }
        state.globalStep = step;
        state.tokensSeen = ((Number) json.getOrDefault("tokens_seen", 0L)).longValue();
        state.epoch = ((Number) json.getOrDefault("epoch", 0L)).longValue();
        Object history = json.get("log_history");
        if (history instanceof List<?> list) {
            for (Object o : list) {
                Map<String, Double> rec = new LinkedHashMap<>();
                ((Map<?, ?>) o).forEach((k, v) -> rec.put((String) k, ((Number) v).doubleValue()));
                state.logHistory.add(rec);
            }
        }
    }

    private static void requireSame(Map<String, Object> json, Path file, String key, long now) {
        Object saved = json.get(key);
        if (saved == null || ((Number) saved).longValue() != now) {
            throw new IllegalArgumentException(file + ": " + key + " was " + saved + " in the checkpoint but is " + now
                    + " now; resuming would not reproduce the run");
        }
    }

    /** Builder; {@code model}, {@code trainData} and {@code loss} are required. */
    public static final class Builder<E> {
        private Module model;
        private TrainingArguments args = TrainingArguments.builder().build();
        private List<E> trainRows;
        private List<E> evalRows;
        private BatchLoss<E> loss;
        private ToLongFunction<List<E>> tokenCount;
        private Evaluator<E> evaluator;
        private OptimizerFactory optimizerFactory;
        private final List<TrainerCallback> callbacks = new ArrayList<>();
        private CheckpointWriter checkpointWriter;

        public Builder<E> model(Module v) { model = v; return this; }
        public Builder<E> args(TrainingArguments v) { args = v; return this; }
        public Builder<E> trainData(List<E> v) { trainRows = v; return this; }
        public Builder<E> evalData(List<E> v) { evalRows = v; return this; }
        public Builder<E> loss(BatchLoss<E> v) { loss = v; return this; }
        /** Tokens in a batch, for tokens/s (default: rows). */
        public Builder<E> tokenCount(ToLongFunction<List<E>> v) { tokenCount = v; return this; }
        public Builder<E> evaluator(Evaluator<E> v) { evaluator = v; return this; }
        public Builder<E> optimizer(OptimizerFactory v) { optimizerFactory = v; return this; }
        public Builder<E> callback(TrainerCallback v) { callbacks.add(v); return this; }
        public Builder<E> checkpointWriter(CheckpointWriter v) { checkpointWriter = v; return this; }

        public Trainer<E> build() {
            return new Trainer<>(this);
        }
    }
}
