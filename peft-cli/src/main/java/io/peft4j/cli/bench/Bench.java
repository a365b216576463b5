package io.peft4j.cli.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.config.TaskType;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.F;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.transformers.Generation;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.quant.Linear4bit;
import io.peft4j.nn.quant.Quantization;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.GenerationResult;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.bert.BertConfig;
import io.peft4j.transformers.bert.BertForSequenceClassification;
import io.peft4j.transformers.gpt2.Gpt2Config;
import io.peft4j.transformers.gpt2.Gpt2LMHeadModel;
import io.peft4j.transformers.llama.LlamaConfig;
import io.peft4j.transformers.llama.LlamaForCausalLM;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.AbstractCollection;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * Micro-benchmark of a small LLaMA: base inference, LoRA training (q,v and all-linear), full fine-tuning,
 * LoRA inference unmerged / merged, and greedy text generation with and without the key/value cache. Each measurement builds its own randomly initialised model in its own
 * {@link NDManager}, runs {@code warmup} untimed and {@code steps} timed iterations (each forward or train
 * step inside an {@link NDScope}, so memory stays flat) and closes the manager.
 *
 * <p>Each result is printed as one line {@code name median_ms=.. tokens_per_s=.. peak_rss_mb=.. rss_mb=..}
 * followed by optional extra {@code key=value} pairs (train steps add the median forward, backward and
 * optimizer times). For the generation measurements a step is one {@code generate} call ({@code genBatch} prompts
 * of {@code genPrompt} random tokens, {@code genNewTokens} greedy new tokens each, no EOS) and
 * {@code tokens_per_s} counts new tokens only. {@code peak_rss_mb} is the process's peak resident set size so far ({@code VmHWM}),
 * which is monotonic: the measurements run lightest first except {@code full-ft-train}, so the forward
 * measurements after it report its peak. {@code run_peak_rss_mb} is the peak during that measurement alone,
 * available where the kernel lets a process reset its high-water mark ({@code /proc/self/clear_refs}).
 */
public final class Bench {
    public static final String BASE_FORWARD = "base-forward";
    public static final String LORA_QV_TRAIN = "lora-qv-train";
    public static final String LORA_ALL_LINEAR_TRAIN = "lora-all-linear-train";
    public static final String FULL_FT_TRAIN = "full-ft-train";
    public static final String LORA_UNMERGED_FORWARD = "lora-unmerged-forward";
    public static final String LORA_MERGED_FORWARD = "lora-merged-forward";
    public static final String DORA_QV_TRAIN = "dora-qv-train";
    public static final String DORA_UNMERGED_FORWARD = "dora-unmerged-forward";
    public static final String ADALORA_QV_TRAIN = "adalora-qv-train";
    /** QLoRA: the LLaMA's Linear layers in NF4 (double quant, blocks of 64), LoRA q,v in float32 on top. */
    public static final String QLORA_TRAIN = "qlora-train";
    public static final String QLORA_FORWARD = "qlora-forward";
    public static final String GENERATE_CACHED = "generate-cached";
    public static final String GENERATE_UNCACHED = "generate-uncached";

    /** GPT-2 and BERT cases: the LLaMA measurements with this prefix; their LoRA trains peft's default targets. */
    public static final String GPT2 = "gpt2-";
    public static final String BERT = "bert-";
    /** The per-architecture measurements ({@code lora-train} = LoRA on the model type's default targets). */
    static final List<String> ARCH_MEASUREMENTS = List.of(BASE_FORWARD, "lora-train", LORA_ALL_LINEAR_TRAIN,
            FULL_FT_TRAIN, LORA_UNMERGED_FORWARD, LORA_MERGED_FORWARD);

    /** Every measurement, in the order they run. */
    public static final List<String> NAMES = names();

    private static List<String> names() {
        List<String> out = new ArrayList<>(List.of(BASE_FORWARD, LORA_QV_TRAIN, LORA_ALL_LINEAR_TRAIN,
                FULL_FT_TRAIN, LORA_UNMERGED_FORWARD, LORA_MERGED_FORWARD, DORA_QV_TRAIN, DORA_UNMERGED_FORWARD,
                ADALORA_QV_TRAIN, QLORA_TRAIN, QLORA_FORWARD, GENERATE_CACHED, GENERATE_UNCACHED));
        for (String prefix : List.of(GPT2, BERT)) {
            ARCH_MEASUREMENTS.forEach(m -> out.add(prefix + m));
        }
        return List.copyOf(out);
    }

    /** Which model a measurement runs on. */
    enum Arch { LLAMA, GPT2, BERT }

    static Arch arch(String name) {
        return name.startsWith(GPT2) ? Arch.GPT2 : name.startsWith(BERT) ? Arch.BERT : Arch.LLAMA;
    }

    private static final long SEED = 1234L;

    private Bench() {}

    /** One result line. {@code extra} holds additional numeric fields (ms breakdowns, memory). */
    public record Measurement(String name, double medianMs, double tokensPerS, double peakRssMb,
                              Map<String, Double> extra) {
        public Measurement {
            extra = Map.copyOf(extra);
        }

        /** The output line: {@code name median_ms=.. tokens_per_s=.. peak_rss_mb=..[ key=value]*}. */
        public String line() {
            StringBuilder sb = new StringBuilder(name)
                    .append(" median_ms=").append(fmt(medianMs, 1))
                    .append(" tokens_per_s=").append(fmt(tokensPerS, 0))
                    .append(" peak_rss_mb=").append(fmt(peakRssMb, 0));
            for (String k : EXTRA_ORDER) {
                Double v = extra.get(k);
                if (v != null) {
                    sb.append(' ').append(k).append('=').append(fmt(v, k.endsWith("_mb") ? 0 : k.startsWith("x_") ? 2
                            : k.endsWith("_per_param") ? 3 : 1));
                }
            }
            return sb.toString();
        }
    }

    private static final List<String> EXTRA_ORDER = List.of("rss_mb", "run_peak_rss_mb", "fwd_ms", "bwd_ms", "opt_ms",
            "min_ms", "max_ms", "gflop", "floor_ms", "x_floor", "x_lora", "base_weight_bytes_per_param", "base_weights_mb");

    /** Benchmark options; defaults are the reference preset (LLaMA 512 x 4 layers, batch 4 x 128). */
    public static final class Options {
        /** Run only these measurements (comma-separated names from {@link #NAMES}); null runs all. */
        public String only;
        /** Intra-op threads; null keeps the engine default ({@code PEFT4J_THREADS} or peft4j's default). */
        public Integer threads;
        /** Inter-op threads (only effective before the engine loads); null keeps the default. */
        public Integer interopThreads;
        public int steps = 10;
        public int warmup = 3;
        /**
         * Where to write libtorch's profiler trace of each forward/train measurement's timed steps (Chrome trace
         * JSON, per-op times and shapes); null profiles nothing. The profiler slows the steps it records.
         */
        public Path profileDir;
        public int hidden = 512;
        public int layers = 4;
        public int heads = 8;
        public int kvHeads = 8;
        public int intermediate = 1376;
        public int vocab = 8000;
        public int batch = 4;
        public int seq = 128;
        /** Generation: prompts per call, prompt length, new tokens per prompt. */
        public int genBatch = 1;
        public int genPrompt = 32;
        public int genNewTokens = 64;

        public Options only(String v) {
            only = v;
            return this;
        }

        public Options threads(Integer v) {
            threads = v;
            return this;
        }

        public Options interopThreads(Integer v) {
            interopThreads = v;
            return this;
        }

        public Options steps(int v) {
            steps = v;
            return this;
        }

        public Options profileDir(Path v) {
            profileDir = v;
            return this;
        }

        public Options warmup(int v) {
            warmup = v;
            return this;
        }

        /** Model and input shape. */
        public Options preset(int hidden, int layers, int heads, int intermediate, int vocab, int batch, int seq) {
            this.hidden = hidden;
            this.layers = layers;
            this.heads = heads;
            this.kvHeads = heads;
            this.intermediate = intermediate;
            this.vocab = vocab;
            this.batch = batch;
            this.seq = seq;
            return this;
        }

        /** Generation measurements: {@code batch} prompts of {@code prompt} tokens, {@code newTokens} new ones each. */
        public Options generation(int batch, int prompt, int newTokens) {
            this.genBatch = batch;
            this.genPrompt = prompt;
            this.genNewTokens = newTokens;
            return this;
        }

        LlamaConfig llamaConfig() {
            return LlamaConfig.builder()
                    .hiddenSize(hidden)
                    .numHiddenLayers(layers)
                    .numAttentionHeads(heads)
                    .numKeyValueHeads(kvHeads)
                    .intermediateSize(intermediate)
                    .vocabSize(vocab)
                    .maxPositionEmbeddings(Math.max(2048, Math.max(seq, genPrompt + genNewTokens)))
                    .build();
        }

        /** GPT-2 of the same width and depth; its 4x-wide two-matrix MLP has the FLOPs of LLaMA's gated one. */
        Gpt2Config gpt2Config() {
            return Gpt2Config.builder().vocabSize(vocab).nPositions(Math.max(1024, seq)).nEmbd(hidden)
                    .nLayer(layers).nHead(heads).build();
        }

        /** BERT of the same width and depth (intermediate 4 x hidden), 2 labels. */
        BertConfig bertConfig() {
            return BertConfig.builder().vocabSize(vocab).hiddenSize(hidden).numHiddenLayers(layers)
                    .numAttentionHeads(heads).intermediateSize(4 * hidden).maxPositionEmbeddings(Math.max(512, seq))
                    .typeVocabSize(2).numLabels(2).build();
        }

        String describe() {
            return "hidden=" + hidden + " layers=" + layers + " heads=" + heads + " kv_heads=" + kvHeads
                    + " intermediate=" + intermediate + " vocab=" + vocab + " batch=" + batch + " seq=" + seq
                    + " gen_batch=" + genBatch + " gen_prompt=" + genPrompt + " gen_new_tokens=" + genNewTokens
                    + " steps=" + steps + " warmup=" + warmup;
        }
    }

    /** Runs the selected measurements, printing a {@code #} header and one line per measurement. */
    public static List<Measurement> run(Options opts, PrintStream out) {
        List<String> selected = opts.only == null ? NAMES : Arrays.stream(opts.only.split(",")).map(String::trim).toList();
        for (String n : selected) {
            if (!NAMES.contains(n)) {
                throw new IllegalArgumentException("unknown measurement '" + n + "'; expected one of " + NAMES);
            }
        }
        if (opts.steps < 1 || opts.warmup < 0) {
            throw new IllegalArgumentException("steps must be >= 1 and warmup >= 0");
        }
        if (opts.genBatch < 1 || opts.genPrompt < 1 || opts.genNewTokens < 1) {
            throw new IllegalArgumentException("generation batch, prompt length and new tokens must be >= 1");
        }
        applyThreads(opts);
        Engine engine = Torch.engine();
        if (opts.threads != null) {
            // The engine may have been loaded earlier with other settings; intra-op threads can change at any time.
            JniUtils.setNumThreads(opts.threads);
        }
        String omp = System.getenv("OMP_WAIT_POLICY");
        out.println("# peft4j bench threads=" + JniUtils.getNumThreads()
                + " interop_threads=" + JniUtils.getNumInteropThreads()
                + " OMP_WAIT_POLICY=" + (omp == null ? "unset" : omp)
                + " MALLOC_TRIM_THRESHOLD_=" + envOr("MALLOC_TRIM_THRESHOLD_", "unset")
                + " MALLOC_MMAP_THRESHOLD_=" + envOr("MALLOC_MMAP_THRESHOLD_", "unset")
                + " mkl_amd_avx512=" + (Torch.mklDispatchPreloaded() ? "on" : "off")
                + " cpus=" + Runtime.getRuntime().availableProcessors()
                + " java=" + System.getProperty("java.version")
                + " torch=" + engine.getVersion());
        out.println("# " + opts.describe());
        double gflops = gemmGflops(opts);
        out.println("# gemm " + fmt(gflops, 1) + " GFLOP/s (a [" + opts.batch * opts.seq + "," + opts.hidden + "] x ["
                + opts.hidden + "," + opts.intermediate + "] linear, this run): floor_ms = the step's matmul GFLOP at"
                + " that rate, x_floor = median_ms / floor_ms");
        out.flush();
        double processPeak = readStatusMb("VmHWM");
        List<Measurement> results = new ArrayList<>();
        for (String name : NAMES) {
            if (!selected.contains(name)) {
                continue;
            }
            boolean reset = resetPeakRss();
            Timings t;
            try {
                t = measure(opts, name);
            } catch (ArithmeticException e) {
                // A diverged step is a finding, not a reason to drop the other measurements.
                out.println("# " + name + " FAILED: " + e.getMessage());
                out.flush();
                continue;
            }
            double hwm = readStatusMb("VmHWM");
            processPeak = Math.max(processPeak, hwm);
            Map<String, Double> extra = new LinkedHashMap<>();
            extra.put("rss_mb", readStatusMb("VmRSS"));
            if (reset) {
                extra.put("run_peak_rss_mb", hwm);
            }
            double median = median(t.total);
            if (t.fwd != null) {
                extra.put("fwd_ms", median(t.fwd));
                extra.put("bwd_ms", median(t.bwd));
                extra.put("opt_ms", median(t.opt));
            }
            extra.put("min_ms", Arrays.stream(t.total).min().orElse(0));
            extra.put("max_ms", Arrays.stream(t.total).max().orElse(0));
            double gflop = stepGflop(opts, name);
            double floor = gflop / gflops * 1000.0;
            extra.put("gflop", gflop);
            extra.put("floor_ms", floor);
            extra.put("x_floor", median / floor);
            // The LoRA variants' cost relative to plain LoRA on the same targets, when both ran in this run.
            extra.putAll(t.memory());
            if (name.equals(DORA_QV_TRAIN) || name.equals(ADALORA_QV_TRAIN) || name.equals(QLORA_TRAIN)) {
                results.stream().filter(r -> r.name().equals(LORA_QV_TRAIN)).findFirst()
                        .ifPresent(lora -> extra.put("x_lora", median / lora.medianMs()));
            }
            double tokensPerS = t.tokens / (median / 1000.0);
            Measurement m = new Measurement(name, median, tokensPerS, processPeak, extra);
            results.add(m);
            out.println(m.line());
            out.flush();
        }
        printRatios(results, out);
        return results;
    }

    /**
     * Pairs {@code {measurement, reference}} whose ratio of medians is printed when both ran: overheads are only
     * comparable within one run on a shared machine.
     */
    static final List<String[]> RATIOS = List.of(
            new String[] {DORA_QV_TRAIN, LORA_QV_TRAIN},
            new String[] {ADALORA_QV_TRAIN, LORA_QV_TRAIN},
            new String[] {DORA_UNMERGED_FORWARD, LORA_UNMERGED_FORWARD},
            new String[] {LORA_UNMERGED_FORWARD, BASE_FORWARD},
            new String[] {LORA_MERGED_FORWARD, BASE_FORWARD},
            new String[] {FULL_FT_TRAIN, LORA_QV_TRAIN},
            new String[] {QLORA_TRAIN, LORA_QV_TRAIN},
            new String[] {QLORA_FORWARD, LORA_UNMERGED_FORWARD},
            new String[] {QLORA_FORWARD, BASE_FORWARD});

    /** {@code # ratio A / B = x} lines for the {@link #RATIOS} pairs present in {@code results}. */
    static void printRatios(List<Measurement> results, PrintStream out) {
        Map<String, Double> medians = new LinkedHashMap<>();
        results.forEach(m -> medians.put(m.name(), m.medianMs()));
        for (String[] pair : RATIOS) {
            Double a = medians.get(pair[0]);
            Double b = medians.get(pair[1]);
            if (a != null && b != null && b > 0) {
                out.println("# ratio " + pair[0] + " / " + pair[1] + " = " + fmt(a / b, 2));
            }
        }
        out.flush();
    }

    /**
     * The LLaMA measurement a {@code gpt2-}/{@code bert-} name stands for; their {@code lora-train} (peft's
     * default targets) plays the role of {@code lora-qv-train}. LLaMA names map to themselves.
     */
    static String baseMeasurement(String name) {
        Arch arch = arch(name);
        if (arch == Arch.LLAMA) {
            return name;
        }
        String m = name.substring(arch == Arch.GPT2 ? GPT2.length() : BERT.length());
        return m.equals("lora-train") ? LORA_QV_TRAIN : m;
    }

    private static Timings measure(Options opts, String fullName) {
        Arch arch = arch(fullName);
        String name = baseMeasurement(fullName);
        return switch (name) {
            case BASE_FORWARD -> forward(opts, fullName, Variant.BASE, arch);
            case LORA_QV_TRAIN -> train(opts, fullName, Variant.LORA_QV, arch);
            case LORA_ALL_LINEAR_TRAIN -> train(opts, fullName, Variant.LORA_ALL_LINEAR, arch);
            case FULL_FT_TRAIN -> train(opts, fullName, Variant.FULL, arch);
            case LORA_UNMERGED_FORWARD -> forward(opts, fullName, Variant.LORA_QV, arch);
            case LORA_MERGED_FORWARD -> forward(opts, fullName, Variant.LORA_QV_MERGED, arch);
            case DORA_QV_TRAIN -> train(opts, fullName, Variant.DORA_QV, arch);
            case DORA_UNMERGED_FORWARD -> forward(opts, fullName, Variant.DORA_QV, arch);
            case ADALORA_QV_TRAIN -> train(opts, fullName, Variant.ADALORA_QV, arch);
            case QLORA_TRAIN -> train(opts, fullName, Variant.QLORA_QV, arch);
            case QLORA_FORWARD -> forward(opts, fullName, Variant.QLORA_QV, arch);
            case GENERATE_CACHED -> generate(opts, true);
            case GENERATE_UNCACHED -> generate(opts, false);
            default -> throw new IllegalStateException(fullName);
        };
    }

    /**
     * Logits of a forward pass with the q,v LoRA adapter active (unmerged), then after {@code mergeAdapter()},
     * on the tiny preset of {@code opts}; the adapter's B is randomised so the delta is not zero. For tests: the
     * merged model must compute what the unmerged one does.
     */
    public static float[][] unmergedAndMergedLogits(Options opts) {
        Torch.engine();
        try (NDManager nd = Torch.newManager()) {
            Torch.manualSeed(SEED);
            Built b = build(nd, opts, Variant.LORA_QV, Arch.LLAMA);
            ModelInput in = ModelInput.of(tokens(nd, opts));
            float[] unmerged = logits(b, in);
            b.peft().mergeAdapter();
            float[] merged = logits(b, in);
            return new float[][] {unmerged, merged};
        }
    }

    // ---- measurements -------------------------------------------------------------------------------

    private enum Variant { BASE, LORA_QV, LORA_QV_MERGED, LORA_ALL_LINEAR, FULL, DORA_QV, ADALORA_QV, QLORA_QV }

    /**
     * Per-step times; {@code tokens} is what one step processes (for {@code tokens_per_s}); {@code memory} holds the
     * base-weight fields of the model measured.
     */
    private record Timings(double[] total, double[] fwd, double[] bwd, double[] opt, double tokens,
                           Map<String, Double> memory) {
        Timings(Options opts, double[] total, double[] fwd, double[] bwd, double[] opt, Built b) {
            this(total, fwd, bwd, opt, (double) opts.batch * opts.seq, b.memory());
        }
    }

    private static Timings forward(Options opts, String name, Variant v, Arch arch) {
        try (NDManager nd = Torch.newManager()) {
            Torch.manualSeed(SEED);
            Built b = build(nd, opts, v, arch);
            if (v == Variant.LORA_QV_MERGED) {
                b.peft().mergeAdapter();
            }
            ModelInput in = ModelInput.of(tokens(nd, opts));
            double[] total = new double[opts.steps];
            try (NoGrad ignored = NoGrad.enter()) {
                for (int i = -opts.warmup; i < opts.steps; i++) {
                    if (i == 0) {
                        startProfile(opts);
                    }
                    long t0 = System.nanoTime();
                    try (NDScope scope = new NDScope()) {
                        scope.suppressNotUsedWarning();
                        b.forward(in);
                    }
                    if (i >= 0) {
                        total[i] = (System.nanoTime() - t0) / 1e6;
                    }
                }
            }
            stopProfile(opts, name);
            return new Timings(opts, total, null, null, null, b);
        }
    }

    private static void startProfile(Options opts) {
        if (opts.profileDir != null) {
            JniUtils.startProfile(false, true, false);
        }
    }

    /** Writes libtorch's profile of the timed steps as {@code <measurement>.trace.json}. */
    private static void stopProfile(Options opts, String measurement) {
        if (opts.profileDir != null) {
            JniUtils.stopProfile(opts.profileDir.resolve(measurement + ".trace.json").toString());
        }
    }

    private static Timings train(Options opts, String name, Variant v, Arch arch) {
        try (NDManager nd = Torch.newManager()) {
            Torch.manualSeed(SEED);
            Built b = build(nd, opts, v, arch);
            (b.peft() != null ? b.peft() : b.model()).train(true);
            NDArray ids = tokens(nd, opts);
            // Causal LMs predict the next token; the classifier gets one class id per sequence.
            NDArray labels = arch == Arch.BERT
                    ? nd.create(new Random(SEED).longs(opts.batch, 0, 2).toArray(), new Shape(opts.batch)) : ids;
            ModelInput in = ModelInput.builder().inputIds(ids).labels(labels).build();
            List<Param> params = b.trainable();
            AdamW opt = AdamW.builder().lr(1e-4f).build();
            double[] total = new double[opts.steps];
            double[] fwd = new double[opts.steps];
            double[] bwd = new double[opts.steps];
            double[] optMs = new double[opts.steps];
            for (int i = -opts.warmup; i < opts.steps; i++) {
                long[] marks = new long[2];
                // The optimizer iterates the parameters first thing: that instant ends the backward pass.
                Collection<Param> timed = new AbstractCollection<>() {
                    @Override
                    public Iterator<Param> iterator() {
                        if (marks[1] == 0) {
                            marks[1] = System.nanoTime();
                        }
                        return params.iterator();
                    }

                    @Override
                    public int size() {
                        return params.size();
                    }
                };
                if (i == 0) {
                    startProfile(opts);
                }
                long t0 = System.nanoTime();
                int globalStep = i + opts.warmup;
                // AdaLoRA's rank budget runs after each update (its time counts in opt_ms).
                Runnable afterUpdate = v == Variant.ADALORA_QV ? () -> b.peft().updateAndAllocate(globalStep) : null;
                try {
                    TrainStep.run(() -> {
                        NDArray loss = b.forward(in).loss();
                        marks[0] = System.nanoTime();
                        return loss;
                    }, opt, timed, afterUpdate);
                } catch (ArithmeticException e) {
                    throw new ArithmeticException(e.getMessage() + " (iteration " + (i + opts.warmup + 1) + " of "
                            + (opts.warmup + opts.steps) + ")");
                }
                long t3 = System.nanoTime();
                if (i >= 0) {
                    total[i] = (t3 - t0) / 1e6;
                    fwd[i] = (marks[0] - t0) / 1e6;
                    bwd[i] = (marks[1] - marks[0]) / 1e6;
                    optMs[i] = (t3 - marks[1]) / 1e6;
                }
            }
            stopProfile(opts, name);
            return new Timings(opts, total, fwd, bwd, optMs, b);
        }
    }

    /** Greedy generation of {@code genNewTokens} after random prompts, the KV cache on or off; no EOS can stop it. */
    private static Timings generate(Options opts, boolean cached) {
        try (NDManager nd = Torch.newManager()) {
            Torch.manualSeed(SEED);
            Built b = build(nd, opts, Variant.BASE, Arch.LLAMA);
            Random rnd = new Random(SEED);
            List<long[]> prompts = new ArrayList<>();
            for (int i = 0; i < opts.genBatch; i++) {
                prompts.add(rnd.longs(opts.genPrompt, 0, opts.vocab).toArray());
            }
            GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(opts.genNewTokens).useCache(cached).build();
            double[] total = new double[opts.steps];
            for (int i = -opts.warmup; i < opts.steps; i++) {
                long t0 = System.nanoTime();
                GenerationResult r = Generation.generate(b.model()::forward, prompts, cfg);
                if (i >= 0) {
                    total[i] = (System.nanoTime() - t0) / 1e6;
                }
                if (r.totalNewTokens() != (long) opts.genBatch * opts.genNewTokens) {
                    throw new IllegalStateException("generated " + r.totalNewTokens() + " tokens, expected "
                            + (long) opts.genBatch * opts.genNewTokens);
                }
            }
            return new Timings(total, null, null, null, (double) opts.genBatch * opts.genNewTokens, b.memory());
        }
    }

    /** The model under test: how to run it and what to train. {@code peft} is null for the plain model. */
    private record Built(PreTrainedModel model, PeftModel peft, List<Param> trainable) {
        ModelOutput forward(ModelInput in) {
            return peft != null ? peft.forward(in) : model.forward(in);
        }

        /**
         * {@code base_weight_bytes_per_param}: bytes held per weight of the base Linear layers (4 in float32; packed
         * codes + quant state in 4 bits), {@code base_weights_mb}: every frozen base tensor of the model (embeddings,
         * norms and lm_head stay float32).
         */
        Map<String, Double> memory() {
            Map<String, Double> out = new LinkedHashMap<>();
            long[] q = Quantization.quantizedWeightFootprint(model);
            long linearParams = q[1];
            long linearBytes = q[0];
            long baseBytes = q[0];
            java.util.Set<Param> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
            for (Map.Entry<String, io.peft4j.nn.Module> e : model.namedModules().entrySet()) {
                io.peft4j.nn.Module m = e.getValue();
                if (m instanceof Linear4bit) {
                    continue;
                }
                for (Map.Entry<String, Param> pe : m.parameters().entrySet()) {
                    Param p = pe.getValue();
                    if (!seen.add(p) || e.getKey().contains("lora_")) {
                        continue;
                    }
                    long bytes = p.numel() * p.data().getDataType().getNumOfBytes();
                    baseBytes += bytes;
                    if (m instanceof io.peft4j.nn.layers.Linear && pe.getKey().equals("weight")
                            && !e.getKey().equals(model.outputEmbeddingsPath())) {
                        linearParams += p.numel();
                        linearBytes += bytes;
                    }
                }
            }
            if (linearParams > 0) {
                out.put("base_weight_bytes_per_param", (double) linearBytes / linearParams);
            }
            out.put("base_weights_mb", baseBytes / (1024.0 * 1024.0));
            return out;
        }
    }

    private static Built build(NDManager nd, Options opts, Variant v, Arch arch) {
        PreTrainedModel model = switch (arch) {
            case LLAMA -> new LlamaForCausalLM(nd, opts.llamaConfig());
            case GPT2 -> new Gpt2LMHeadModel(nd, opts.gpt2Config());
            case BERT -> new BertForSequenceClassification(nd, opts.bertConfig());
        };
        model.eval();
        LoraConfig.Builder lora = LoraConfig.builder().r(16).loraAlpha(32).useDora(v == Variant.DORA_QV)
                .taskType(arch == Arch.BERT ? TaskType.SEQ_CLS : TaskType.CAUSAL_LM);
        switch (v) {
            case BASE:
                model.requiresGrad(false);
                return new Built(model, null, List.of());
            case FULL:
                model.requiresGrad(true);
                return new Built(model, null, new ArrayList<>(model.namedParameters().values()));
            default:
                break;
        }
        // LLaMA's lora-qv names its targets; GPT-2 and BERT use peft's defaults (c_attn; query, value).
        if (v == Variant.QLORA_QV) {
            // what loadIn4bit does at load time: every Linear but lm_head to NF4, the float weights freed
            Quantization.quantize(model, BitsAndBytesConfig.nf4());
        }
        PeftConfig config = v == Variant.LORA_ALL_LINEAR ? lora.targetModules(TargetModules.allLinear()).build()
                : v == Variant.ADALORA_QV ? adaLora(opts)
                : arch == Arch.LLAMA ? lora.targetModules("q_proj", "v_proj").build() : lora.build();
        PeftModel peft = PeftModel.getPeftModel(model, config);
        // Zero-initialised B would make the adapter a no-op (and merging trivially exact): randomise it.
        for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
            if (e.getKey().contains("lora_B")) {
                Param p = e.getValue();
                p.setData(nd.randomNormal(0f, 0.02f, p.shape(), DataType.FLOAT32));
            }
        }
        return new Built(model, peft, peft.trainableParameters());
    }

    /**
     * AdaLoRA on q,v starting at LoRA's rank 16 (target 8), with the orthogonal penalty and a budget that shrinks
     * from the first step and masks every step over the run, the most work the allocator does per step.
     */
    private static AdaLoraConfig adaLora(Options opts) {
        return AdaLoraConfig.builder().initR(16).targetR(8).loraAlpha(32).targetModules("q_proj", "v_proj")
                .tinit(0).tfinal(0).deltaT(1).totalStep(opts.warmup + opts.steps + 1).taskType(TaskType.CAUSAL_LM)
                .build();
    }

    private static NDArray tokens(NDManager nd, Options opts) {
        Random rnd = new Random(SEED);
        long[] ids = new long[opts.batch * opts.seq];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = rnd.nextInt(opts.vocab);
        }
        return nd.create(ids, new Shape(opts.batch, opts.seq));
    }

    private static float[] logits(Built peft, ModelInput in) {
        try (NoGrad ignored = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            return peft.forward(in).logits().toFloatArray();
        }
    }

    // ---- the matmul floor -------------------------------------------------------------------------------

    /** Peak GFLOP/s of one MLP-sized linear layer (no grad), the rate a step's matmuls could run at. */
    static double gemmGflops(Options opts) {
        long n = (long) opts.batch * opts.seq;
        try (NDManager nd = Torch.newManager(); NoGrad ignored = NoGrad.enter()) {
            Torch.manualSeed(SEED);
            NDArray x = nd.randomNormal(new Shape(n, opts.hidden));
            NDArray w = nd.randomNormal(new Shape(opts.intermediate, opts.hidden));
            int reps = 50;
            double[] ms = new double[reps];
            for (int i = -10; i < reps; i++) {
                long t0 = System.nanoTime();
                F.linear(x, w, null).close();
                if (i >= 0) {
                    ms[i] = (System.nanoTime() - t0) / 1e6;
                }
            }
            // The fastest repetition: a peak rate, so that noise from other tenants shows in x_floor, not in the floor.
            return 2.0 * n * opts.hidden * opts.intermediate / (Arrays.stream(ms).min().orElseThrow() / 1000.0) / 1e9;
        }
    }

    /**
     * Matmul GFLOP of one step. A forward pass costs L (linear layers, lm_head included) + A (the two attention
     * matmuls); backward costs 2A, plus L for the activation gradients and L more where every weight gets a
     * gradient (full fine-tuning). LoRA's own matmuls are under 1% and left out. A generation step is
     * {@code genNewTokens} forward passes: with the cache, the prompt once and then one token against a growing
     * cache; without it, the whole sequence every time.
     */
    static double stepGflop(Options opts, String name) {
        double n = (double) opts.batch * opts.seq;
        long headDim = opts.hidden / opts.heads;
        Arch arch = arch(name);
        double h = opts.hidden;
        double perToken = switch (arch) {
            case LLAMA -> opts.layers * (h * opts.heads * headDim * 2 + 2.0 * h * opts.kvHeads * headDim
                    + 3.0 * h * opts.intermediate) + h * opts.vocab;
            // q,k,v,o + a 4h MLP; GPT-2 ends in the lm_head, BERT in a 2-label classifier (negligible).
            case GPT2 -> opts.layers * (4 * h * h + 8 * h * h) + h * opts.vocab;
            case BERT -> opts.layers * (4 * h * h + 8 * h * h);
        };
        name = baseMeasurement(name);
        if (name.equals(GENERATE_CACHED) || name.equals(GENERATE_UNCACHED)) {
            boolean cached = name.equals(GENERATE_CACHED);
            double flop = 0;
            for (int s = 0; s < opts.genNewTokens; s++) {
                long keys = opts.genPrompt + s;
                long queries = cached && s > 0 ? 1 : keys;
                flop += 2.0 * opts.genBatch * queries * perToken
                        + opts.layers * 2 * (2.0 * opts.genBatch * opts.heads * queries * keys * headDim);
            }
            return flop / 1e9;
        }
        double linear = 2 * n * perToken;
        double attn = opts.layers * 2 * (2.0 * opts.batch * opts.heads * opts.seq * opts.seq * headDim);
        double flop = switch (name) {
            case LORA_QV_TRAIN, LORA_ALL_LINEAR_TRAIN, DORA_QV_TRAIN, ADALORA_QV_TRAIN, QLORA_TRAIN -> 2 * linear + 3 * attn;
            case FULL_FT_TRAIN -> 3 * linear + 3 * attn;
            default -> linear + attn;
        };
        return flop / 1e9;
    }

    // ---- memory and stats -----------------------------------------------------------------------------

    private static String envOr(String name, String dflt) {
        String v = System.getenv(name);
        return v == null ? dflt : v;
    }

    /** A field of {@code /proc/self/status} in MiB, or 0 where it is not available. */
    public static double readStatusMb(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(field + ":")) {
                    String[] parts = line.substring(field.length() + 1).trim().split("\\s+");
                    return Long.parseLong(parts[0]) / 1024.0;
                }
            }
        } catch (IOException | RuntimeException e) {
            return 0;
        }
        return 0;
    }

    /** Resets the kernel's peak-RSS mark ({@code echo 5 > /proc/self/clear_refs}); false where not allowed. */
    public static boolean resetPeakRss() {
        if (Boolean.getBoolean("peft4j.bench.noResetPeak")) {
            return false;
        }
        try {
            Files.writeString(Path.of("/proc/self/clear_refs"), "5");
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    private static String fmt(double v, int decimals) {
        return String.format(Locale.ROOT, "%." + decimals + "f", v);
    }

    private static void applyThreads(Options opts) {
        if (opts.threads != null) {
            System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(opts.threads));
        }
        if (opts.interopThreads != null) {
            System.setProperty("ai.djl.pytorch.num_interop_threads", Integer.toString(opts.interopThreads));
        }
    }

    /** Command line: {@code [--only NAME] [--threads N] [--interop N] [--steps N] [--warmup N]}. */
    public static void main(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String val = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--only" -> o.only = val;
                case "--threads" -> o.threads = Integer.parseInt(val);
                case "--interop" -> o.interopThreads = Integer.parseInt(val);
                case "--steps" -> o.steps = Integer.parseInt(val);
                case "--warmup" -> o.warmup = Integer.parseInt(val);
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
            i++;
        }
        run(o, System.out);
    }
}
