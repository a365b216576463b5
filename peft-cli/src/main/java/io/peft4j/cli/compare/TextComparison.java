package io.peft4j.cli.compare;

import io.peft4j.cli.train.TextTask;
import ai.djl.ndarray.NDArray;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Module;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.train.LrSchedule;
import io.peft4j.nn.train.TrainingArguments;
import io.peft4j.tuners.adalora.AdaLoraModel;
import io.peft4j.tuners.lora.LoraGA;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * {@code peft compare --model DIR --data FILE}: every method on a Hugging Face model and text data. Each method
 * loads the model afresh, trains with the same rows, batches, steps and seed, and is evaluated on the same held-out
 * rows: causal-LM loss and perplexity, or (for a sequence-classification model) loss and accuracy.
 */
public final class TextComparison {
    /** Batches LoRA-GA estimates its gradients on. */
    static final int LORA_GA_BATCHES = 4;

    private TextComparison() {}

    /**
     * @param evalData held-out rows; null holds out the last 10% of {@code data} (at least one row)
     * @param promptLr learning rate of the prompt-learning methods (they train only a few embeddings)
     * @param fullFtLr learning rate of full fine-tuning
     */
    public record Options(String model, Path data, Path evalData, List<Method> methods, int steps, float lr,
                          float promptLr, float fullFtLr, int r, int alpha, int virtualTokens, int batchSize,
                          int maxLength, long seed) {}

    /** Every method, in table order. */
    public static final List<Method> METHODS = List.of(Method.values());

    public static List<Comparison.Result> run(Options o, Path adaptersDir, PrintStream out) throws IOException {
        Path modelDir = HfModels.resolve(o.model());
        TaskType task = TextTask.taskOf(modelDir);
        List<Comparison.Result> results = new ArrayList<>();
        try (TextTask.LazyTokenizer tok = new TextTask.LazyTokenizer(modelDir)) {
            TextTask<Object> trainTask;
            TextTask<Object> evalTask;
            try (PreTrainedModel probe = load(o, task, null)) {
                TextTask<Object> all = TextTask.read(task, probe, tok, o.data(), o.maxLength());
                if (o.evalData() != null) {
                    trainTask = all;
                    evalTask = TextTask.read(task, probe, tok, o.evalData(), o.maxLength());
                } else {
                    if (all.rows().size() < 2) {
                        throw new IllegalArgumentException(o.data() + ": needs at least 2 rows to hold one out for "
                                + "evaluation (or give --eval-data)");
                    }
                    int held = Math.max(1, all.rows().size() / 10);
                    List<TextTask<Object>> parts = all.split(all.rows().size() - held);
                    trainTask = parts.get(0);
                    evalTask = parts.get(1);
                }
            }
            out.printf(Locale.ROOT, "model: %s (%s); data: %,d training rows, %,d evaluation rows%s%n", o.model(),
                    task == TaskType.SEQ_CLS ? "sequence classification" : "causal LM", trainTask.rows().size(),
                    evalTask.rows().size(), o.evalData() == null ? " (the last 10% of --data)" : "");
            out.printf(Locale.ROOT, "each method: %d steps of batch %d, seed %d%n%n", o.steps(), o.batchSize(), o.seed());
            Method.Settings settings = new Method.Settings(o.r(), o.alpha(), null, null, null, o.steps(),
                    o.virtualTokens(), task);
            for (Method method : o.methods()) {
                Comparison.Result r = Comparison.attempt(method.cliName(), out, () -> runMethod(method, settings, o,
                        task, trainTask, evalTask, adaptersDir.resolve(method.cliName()), out));
                if (r != null) {
                    results.add(r);
                }
            }
        }
        return results;
    }

    private static Comparison.Result runMethod(Method method, Method.Settings settings, Options o, TaskType task,
                                               TextTask<Object> train, TextTask<Object> eval, Path adapterDir,
                                               PrintStream out) throws IOException {
        Torch.manualSeed(o.seed());
        try (PreTrainedModel base = load(o, task, method == Method.QLORA ? BitsAndBytesConfig.nf4() : null)) {
            var m = base.manager();
            PeftConfig cfg = method.config(settings);
            Module model = base;
            Function<ModelInput, ModelOutput> forward = base::forward;
            if (cfg != null) {
                if (method == Method.LORA_GA) {
                    LoraGA.preprocess(base, (LoraConfig) cfg, train.cycledBatches(m, LORA_GA_BATCHES, o.batchSize()));
                }
                PeftModel peft = PeftModel.getPeftModel(base, cfg);
                model = peft;
                forward = peft::forward;
            } else {
                base.requiresGrad(true);
            }
            Function<ModelInput, ModelOutput> fwd = forward;
            Function<ModelInput, ModelOutput> evalForward = method == Method.ADALORA
                    && (Object) ((PeftModel) model).tuner() instanceof AdaLoraModel ada ? withoutOrthogonalPenalty(fwd, ada) : fwd;
            float lr = method.promptLearning() ? o.promptLr() : method == Method.FULL_FT ? o.fullFtLr() : o.lr();
            TrainingArguments args = TrainingArguments.builder().learningRate(lr).lrSchedule(LrSchedule.CONSTANT)
                    .maxSteps(o.steps()).batchSize(o.batchSize()).evalBatchSize(o.batchSize()).loggingSteps(1)
                    .seed(o.seed()).build();
            return Comparison.run(method.cliName(), method.settings(settings), model, args, train.rows(),
                    batch -> fwd.apply(train.batch(m, batch)).loss(), train::tokens,
                    () -> evalMetrics(eval.evaluate(evalForward, m, eval.rows(), o.batchSize())), adapterDir, out);
        }
    }

    /**
     * AdaLoRA adds its orthogonal regulariser to every loss the model returns (as peft, also in eval mode); the
     * evaluation compares task losses, so it is taken off again there.
     */
    private static Function<ModelInput, ModelOutput> withoutOrthogonalPenalty(Function<ModelInput, ModelOutput> fwd,
                                                                              AdaLoraModel ada) {
        return input -> {
            ModelOutput o = fwd.apply(input);
            NDArray zero = o.loss().zerosLike();
            NDArray penalty = ada.afterForward(new ModelOutput(o.logits(), zero, null)).loss();
            return new ModelOutput(o.logits(), o.loss().sub(penalty), o.hiddenStates(), o.pastKeyValues());
        };
    }

    private static PreTrainedModel load(Options o, TaskType task, BitsAndBytesConfig quant) throws IOException {
        return TextTask.loadModel(o.model(), task, quant);
    }

    /** {@code eval_loss} and {@code eval_perplexity} or {@code eval_accuracy}; counts left out. */
    private static Map<String, Double> evalMetrics(Map<String, Double> m) {
        Map<String, Double> out = new LinkedHashMap<>();
        m.forEach((k, v) -> {
            if (!k.equals("rows") && !k.equals("tokens")) {
                out.put("eval_" + k, v);
            }
        });
        return out;
    }
}
