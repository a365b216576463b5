package io.peft4j.nn.train;

import java.nio.file.Path;

/**
 * What a {@link Trainer} run does, with Hugging Face {@code TrainingArguments}' names and defaults where they exist
 * ({@code learning_rate} 5e-5, linear schedule, 3 epochs, batch 8, {@code max_grad_norm} 1.0, AdamW betas
 * 0.9/0.999, eps 1e-8, seed 42, logging and saving every 500 steps). Immutable; build with {@link #builder()}.
 */
public final class TrainingArguments {
    private final float learningRate;
    private final LrSchedule lrSchedule;
    private final int warmupSteps;
    private final double warmupRatio;
    private final int numEpochs;
    private final int maxSteps;
    private final int batchSize;
    private final int evalBatchSize;
    private final int gradientAccumulationSteps;
    private final float maxGradNorm;
    private final float weightDecay;
    private final float adamBeta1;
    private final float adamBeta2;
    private final float adamEpsilon;
    private final long seed;
    private final boolean shuffle;
    private final int evalSteps;
    private final int saveSteps;
    private final int loggingSteps;
    private final Path outputDir;

    private TrainingArguments(Builder b) {
        learningRate = b.learningRate;
        lrSchedule = b.lrSchedule;
        warmupSteps = b.warmupSteps;
        warmupRatio = b.warmupRatio;
        numEpochs = b.numEpochs;
        maxSteps = b.maxSteps;
        batchSize = b.batchSize;
        evalBatchSize = b.evalBatchSize;
        gradientAccumulationSteps = b.gradientAccumulationSteps;
        maxGradNorm = b.maxGradNorm;
        weightDecay = b.weightDecay;
        adamBeta1 = b.adamBeta1;
        adamBeta2 = b.adamBeta2;
        adamEpsilon = b.adamEpsilon;
        seed = b.seed;
        shuffle = b.shuffle;
        evalSteps = b.evalSteps;
        saveSteps = b.saveSteps;
        loggingSteps = b.loggingSteps;
        outputDir = b.outputDir;
        check(learningRate >= 0 && Float.isFinite(learningRate), "learning_rate", learningRate);
        check(warmupSteps >= 0, "warmup_steps", warmupSteps);
        check(warmupRatio >= 0 && warmupRatio <= 1, "warmup_ratio", warmupRatio);
        check(numEpochs >= 1 || maxSteps > 0, "num_train_epochs", numEpochs);
        check(batchSize >= 1, "per_device_train_batch_size", batchSize);
        check(evalBatchSize >= 1, "per_device_eval_batch_size", evalBatchSize);
        check(gradientAccumulationSteps >= 1, "gradient_accumulation_steps", gradientAccumulationSteps);
        check(maxGradNorm >= 0, "max_grad_norm", maxGradNorm);
        check(weightDecay >= 0, "weight_decay", weightDecay);
        check(evalSteps >= 0 && saveSteps >= 0 && loggingSteps >= 0, "eval/save/logging_steps",
                evalSteps + "/" + saveSteps + "/" + loggingSteps);
    }

    private static void check(boolean ok, String field, Object value) {
        if (!ok) {
            throw new IllegalArgumentException("TrainingArguments: invalid " + field + " = " + value);
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.learningRate = learningRate;
        b.lrSchedule = lrSchedule;
        b.warmupSteps = warmupSteps;
        b.warmupRatio = warmupRatio;
        b.numEpochs = numEpochs;
        b.maxSteps = maxSteps;
        b.batchSize = batchSize;
        b.evalBatchSize = evalBatchSize;
        b.gradientAccumulationSteps = gradientAccumulationSteps;
        b.maxGradNorm = maxGradNorm;
        b.weightDecay = weightDecay;
        b.adamBeta1 = adamBeta1;
        b.adamBeta2 = adamBeta2;
        b.adamEpsilon = adamEpsilon;
        b.seed = seed;
        b.shuffle = shuffle;
        b.evalSteps = evalSteps;
        b.saveSteps = saveSteps;
        b.loggingSteps = loggingSteps;
        b.outputDir = outputDir;
        return b;
    }

    public float learningRate() { return learningRate; }
    public LrSchedule lrSchedule() { return lrSchedule; }
    public int warmupSteps() { return warmupSteps; }
    public double warmupRatio() { return warmupRatio; }
    public int numEpochs() { return numEpochs; }
    /** Total optimizer steps; when positive it overrides {@link #numEpochs()} (the data is cycled as needed). */
    public int maxSteps() { return maxSteps; }
    public int batchSize() { return batchSize; }
    public int evalBatchSize() { return evalBatchSize; }
    public int gradientAccumulationSteps() { return gradientAccumulationSteps; }
    public float maxGradNorm() { return maxGradNorm; }
    public float weightDecay() { return weightDecay; }
    public float adamBeta1() { return adamBeta1; }
    public float adamBeta2() { return adamBeta2; }
    public float adamEpsilon() { return adamEpsilon; }
    public long seed() { return seed; }
    public boolean shuffle() { return shuffle; }
    /** Evaluate every N optimizer steps (0: only at the end, when there is evaluation data). */
    public int evalSteps() { return evalSteps; }
    /** Write a checkpoint every N optimizer steps (0: never; needs {@link #outputDir()}). */
    public int saveSteps() { return saveSteps; }
    /** Log every N optimizer steps (0: never). */
    public int loggingSteps() { return loggingSteps; }
    public Path outputDir() { return outputDir; }

    /** Warm-up steps of a run of {@code totalSteps}: {@code warmup_steps} if set, else {@code ceil(ratio·total)} as HF. */
    public long warmupFor(long totalSteps) {
        return warmupSteps > 0 ? warmupSteps : (long) Math.ceil(warmupRatio * totalSteps);
    }

    /** Builder with HF's defaults. */
    public static final class Builder {
        private float learningRate = 5e-5f;
        private LrSchedule lrSchedule = LrSchedule.LINEAR;
        private int warmupSteps;
        private double warmupRatio;
        private int numEpochs = 3;
        private int maxSteps = -1;
        private int batchSize = 8;
        private int evalBatchSize = 8;
        private int gradientAccumulationSteps = 1;
        private float maxGradNorm = 1f;
        private float weightDecay;
        private float adamBeta1 = 0.9f;
        private float adamBeta2 = 0.999f;
        private float adamEpsilon = 1e-8f;
        private long seed = 42;
        private boolean shuffle = true;
        private int evalSteps;
        private int saveSteps = 500;
        private int loggingSteps = 500;
        private Path outputDir;

        public Builder learningRate(float v) { learningRate = v; return this; }
        public Builder lrSchedule(LrSchedule v) { lrSchedule = v; return this; }
        public Builder warmupSteps(int v) { warmupSteps = v; return this; }
        public Builder warmupRatio(double v) { warmupRatio = v; return this; }
        public Builder numEpochs(int v) { numEpochs = v; return this; }
        public Builder maxSteps(int v) { maxSteps = v; return this; }
        public Builder batchSize(int v) { batchSize = v; return this; }
        public Builder evalBatchSize(int v) { evalBatchSize = v; return this; }
        public Builder gradientAccumulationSteps(int v) { gradientAccumulationSteps = v; return this; }
        /** Global L2 norm to clip gradients to; 0 disables clipping. */
        public Builder maxGradNorm(float v) { maxGradNorm = v; return this; }
        /** Decoupled weight decay; never applied to biases and normalisation weights (as HF). */
        public Builder weightDecay(float v) { weightDecay = v; return this; }
        public Builder adamBetas(float b1, float b2) { adamBeta1 = b1; adamBeta2 = b2; return this; }
        public Builder adamEpsilon(float v) { adamEpsilon = v; return this; }
        public Builder seed(long v) { seed = v; return this; }
        /** Shuffle the training rows each epoch (a permutation determined by seed and epoch). */
        public Builder shuffle(boolean v) { shuffle = v; return this; }
        public Builder evalSteps(int v) { evalSteps = v; return this; }
        public Builder saveSteps(int v) { saveSteps = v; return this; }
        public Builder loggingSteps(int v) { loggingSteps = v; return this; }
        public Builder outputDir(Path v) { outputDir = v; return this; }

        public TrainingArguments build() {
            return new TrainingArguments(this);
        }
    }
}
