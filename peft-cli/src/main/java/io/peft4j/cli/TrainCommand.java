package io.peft4j.cli;

import io.peft4j.cli.train.ProgressCallback;
import io.peft4j.cli.train.TextTask;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.hub.HfModels;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.model.LoraPlus;
import io.peft4j.model.PeftModel;
import io.peft4j.model.SaveOptions;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.train.LrSchedule;
import io.peft4j.nn.train.MetricsLogger;
import io.peft4j.nn.train.Trainer;
import io.peft4j.nn.train.TrainerCallback;
import io.peft4j.nn.train.TrainerState;
import io.peft4j.nn.train.TrainingArguments;
import io.peft4j.tuners.lora.LoraGA;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "train", description = "Train an adapter on a causal-LM dataset (or, for a SEQ_CLS config, a "
        + "classification dataset) with the Trainer (schedule, gradient accumulation, clipping, evaluation, checkpoints "
        + "and resume) and save it in the Hugging Face layout.")
final class TrainCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory (or cached repo id)")
    String model;

    @Option(names = "--config", required = true, description = "adapter_config.json (or its directory)")
    Path config;

    @Option(names = "--data", required = true, description = "JSON lines or a JSON array of rows: {\"text\"}, "
            + "{\"prompt\", \"completion\"}, Alpaca {\"instruction\", \"input\", \"output\"} or {\"input_ids\"}; for a "
            + "SEQ_CLS config {\"text\" or \"input_ids\", \"label\"} rows, or a .csv with text,label columns")
    Path data;

    @Option(names = "--eval-data", description = "rows in the same format, evaluated (loss and perplexity, or accuracy) every "
            + "--eval-steps and at the end")
    Path evalData;

    @Option(names = "--out", required = true, description = "where to save the adapter (checkpoints go to OUT/checkpoints)")
    Path out;

    @Option(names = "--steps", description = "optimizer steps (overrides --epochs)")
    Integer steps;

    @Option(names = "--epochs", defaultValue = "1", description = "passes over the data (default ${DEFAULT-VALUE})")
    int epochs;

    @Option(names = "--lr", defaultValue = "2e-4", description = "learning rate (default ${DEFAULT-VALUE})")
    float lr;

    @Option(names = "--scheduler", defaultValue = "linear",
            description = "linear, cosine, constant or constant_with_warmup (default ${DEFAULT-VALUE})")
    String scheduler;

    @Option(names = "--warmup-steps", defaultValue = "0", description = "warm-up steps")
    int warmupSteps;

    @Option(names = "--warmup-ratio", defaultValue = "0", description = "warm-up as a fraction of the steps")
    double warmupRatio;

    @Option(names = "--weight-decay", defaultValue = "0", description = "AdamW weight decay (not on biases and norms)")
    float weightDecay;

    @Option(names = "--seed", defaultValue = "42", description = "random seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--batch-size", defaultValue = "4", description = "rows per micro-batch (default ${DEFAULT-VALUE})")
    int batchSize;

    @Option(names = "--grad-accum", defaultValue = "1", description = "micro-batches per optimizer step")
    int gradAccum;

    @Option(names = "--max-length", defaultValue = "256", description = "truncate rows (default ${DEFAULT-VALUE})")
    int maxLength;

    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "global gradient clipping; 0 = off")
    float maxGradNorm;

    @Option(names = "--logging-steps", defaultValue = "10", description = "print and record metrics every N steps")
    int loggingSteps;

    @Option(names = "--eval-steps", defaultValue = "0", description = "evaluate every N steps (0: at the end)")
    int evalSteps;

    @Option(names = "--save-steps", defaultValue = "0", description = "checkpoint every N steps into OUT/checkpoints")
    int saveSteps;

    @Option(names = "--resume", paramLabel = "DIR|latest", description = "resume from a checkpoint directory, or the "
            + "latest one in OUT/checkpoints")
    String resume;

    @Option(names = "--metrics", description = "metrics JSON lines (default OUT/metrics.jsonl)")
    Path metrics;

    @Option(names = "--quiet", description = "no progress bar and no per-step lines")
    boolean quiet;

    @Option(names = "--lora-ga-batches", defaultValue = "8", paramLabel = "N",
            description = "with init_lora_weights \"lora_ga\": the first N batches estimate the gradients that "
                    + "initialise the adapter (default ${DEFAULT-VALUE})")
    int loraGaBatches;

    @Option(names = "--loraplus-lr-ratio", paramLabel = "R",
            description = "LoRA+: train lora_B (and 1-D parameters) with learning rate R x --lr (peft suggests 16)")
    Float loraplusLrRatio;

    @Option(names = "--load-in-4bit", description = "QLoRA: load the model's Linear layers in NF4 with double "
            + "quantisation (lm_head stays float32); a bitsandbytes 4-bit model directory loads in 4 bits anyway")
    boolean loadIn4bit;

    @Override
    public Integer call() throws Exception {
        if ((steps != null && steps <= 0) || epochs <= 0 || batchSize <= 0 || gradAccum <= 0 || maxLength < 2) {
            throw new IllegalArgumentException("--steps, --epochs, --batch-size and --grad-accum must be > 0 and "
                    + "--max-length >= 2");
        }
        if (loraplusLrRatio != null && !(loraplusLrRatio > 0)) {
            // Checked before the model loads, so a bad flag costs nothing and prints one line.
            throw new IllegalArgumentException("--loraplus-lr-ratio (loraplus_lr_ratio) must be > 0, got " + loraplusLrRatio);
        }
        LrSchedule schedule = LrSchedule.fromHfName(scheduler);
        Path checkpoints = out.resolve("checkpoints");
        TrainingArguments args = TrainingArguments.builder().learningRate(lr).lrSchedule(schedule)
                .warmupSteps(warmupSteps).warmupRatio(warmupRatio).weightDecay(weightDecay).numEpochs(epochs)
                .maxSteps(steps == null ? -1 : steps).batchSize(batchSize).evalBatchSize(batchSize)
                .gradientAccumulationSteps(gradAccum).maxGradNorm(maxGradNorm).seed(seed).loggingSteps(loggingSteps)
                .evalSteps(evalSteps).saveSteps(saveSteps).outputDir(checkpoints).build();
        Path resumeFrom = null;
        if (resume != null) {
            resumeFrom = resume.equals("latest") ? Trainer.latestCheckpoint(checkpoints) : Path.of(resume);
            if (resumeFrom == null) {
                throw new IOException("--resume latest: no checkpoint-N directory in " + checkpoints);
            }
        }
        Path modelDir = HfModels.resolve(model);
        Path initialDir = null;
        try (TextTask.LazyTokenizer tok = new TextTask.LazyTokenizer(modelDir)) {
            Torch.manualSeed(seed);
            PeftConfig cfg = PeftConfig.fromPretrained(config);
            var json = cfg.toJsonNode();
            json.put("inference_mode", false);
            // SEQ_CLS adapters train a classification head on {text, label} rows; anything else is a causal LM.
            try (PreTrainedModel base = TextTask.loadModel(model, cfg.taskType(),
                    loadIn4bit ? BitsAndBytesConfig.nf4() : null)) {
                TextTask<Object> task = TextTask.read(cfg.taskType(), base, tok, data, maxLength);
                List<Object> rows = task.rows();
                List<Object> evalRows = evalData == null ? null
                        : TextTask.read(cfg.taskType(), base, tok, evalData, maxLength).rows();
                if (cfg instanceof AdaLoraConfig && json.path("total_step").isNull()) {
                    // AdaLoRA budgets its ranks over the run; the allocator runs every step (PeftModel's callback).
                    json.put("total_step", Trainer.totalSteps(args, rows.size()));
                }
                PeftConfig trainConfig = PeftConfig.fromJsonNode(json, cfg.sourceName());
                var m = base.manager();
                boolean loraGa = trainConfig instanceof LoraConfig lc && "lora_ga".equals(lc.initLoraWeights().name());
                if (loraGa) {
                    if (loraGaBatches <= 0) {
                        throw new IllegalArgumentException("--lora-ga-batches must be > 0, got " + loraGaBatches);
                    }
                    List<ModelInput> batches = task.cycledBatches(m, loraGaBatches, batchSize);
                    System.out.printf(Locale.ROOT, "LoRA-GA: estimating gradients on %d batches, one target layer per "
                            + "pass%n", loraGaBatches);
                    LoraGA.preprocess(base, (LoraConfig) trainConfig, batches);
                }
                PeftModel peft = PeftModel.getPeftModel(base, trainConfig);
                if (loraGa) {
                    // LoRA-GA changed the base weights: keep the initial adapter to save a plain LoRA one at the end.
                    initialDir = Files.createTempDirectory("peft-lora-ga-init");
                    peft.saveAdapter(initialDir);
                }
                peft.printTrainableParameters();
                Trainer.Builder<Object> b = Trainer.builder().model(peft).args(args)
                        .trainData(rows).evalData(evalRows)
                        .loss(batch -> peft.forward(task.batch(m, batch)).loss())
                        .tokenCount(task::tokens)
                        .evaluator(eval -> task.evaluate(peft::forward, m, eval, batchSize))
                        .checkpointWriter(peft::saveAdapter);
                if (loraplusLrRatio != null) {
                    b.optimizer((a, trainable) -> LoraPlus.optimizer(peft, lr, loraplusLrRatio, weightDecay, maxGradNorm));
                }
                try (MetricsLogger logger = new MetricsLogger(metrics != null ? metrics : out.resolve("metrics.jsonl"))) {
                    b.callback(logger);
                    if (!quiet) {
                        b.callback(new LogLines(task));
                        if (System.console() != null) {
                            b.callback(new ProgressCallback(System.err, "train"));
                        }
                    }
                    Trainer<Object> trainer = b.build();
                    long started = System.nanoTime();
                    TrainerState st = trainer.train(resumeFrom);
                    peft.eval();
                    peft.saveAdapter(out, initialDir == null ? SaveOptions.DEFAULT
                            : SaveOptions.builder().pathInitialModelForWeightConversion(initialDir).build());
                    System.out.printf(Locale.ROOT, "trained to step %d in %.1f s (final loss %.4f); adapter saved to %s%s%n",
                            st.globalStep(), (System.nanoTime() - started) / 1e9, st.lastLoss(), out,
                            loraGa ? " (converted to plain LoRA of twice the rank, for the original base model)" : "");
                }
            }
        } finally {
            if (initialDir != null) {
                io.peft4j.nn.AtomicDirectory.deleteTree(initialDir);
            }
        }
        return 0;
    }

    /** {@code step i/n loss=.. lr=.. grad_norm=.. tokens_per_s=..} per logged step; eval metrics as they come. */
    private static final class LogLines implements TrainerCallback {
        private final TextTask<?> task;

        LogLines(TextTask<?> task) {
            this.task = task;
        }

        @Override
        public void onLog(TrainerState s, Map<String, Double> logs) {
            System.out.printf(Locale.ROOT, "step %d/%d loss=%.4f lr=%.3e grad_norm=%.4f tokens_per_s=%.0f%n",
                    s.globalStep(), s.totalSteps(), logs.get("loss"), logs.get("learning_rate"), logs.get("grad_norm"),
                    logs.get("tokens_per_s"));
        }

        @Override
        public void onEvaluate(TrainerState s, Map<String, Double> metrics) {
            System.out.printf(Locale.ROOT, "eval step %d %s%n", s.globalStep(), task.describe(metrics, "eval_"));
        }
    }
}
