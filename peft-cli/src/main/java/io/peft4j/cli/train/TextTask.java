package io.peft4j.cli.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.hub.HfTokenizer;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.data.CausalLmExample;
import io.peft4j.nn.data.ClassificationExample;
import io.peft4j.nn.data.Datasets;
import io.peft4j.nn.data.Tokenizer;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.transformers.ClassifierHead;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;

/**
 * The rows of one text task and how to batch and score them, shared by {@code peft train}, {@code peft eval} and
 * {@code peft compare}: causal-LM rows (loss and perplexity over the tokens that carry a label) or
 * sequence-classification rows (loss and accuracy).
 *
 * @param <E> one row
 */
public final class TextTask<E> {
    private final TaskType type;
    private final List<E> rows;
    private final List<String> labelNames;
    private final long padId;

    private TextTask(TaskType type, List<E> rows, List<String> labelNames, long padId) {
        this.type = type;
        this.rows = List.copyOf(rows);
        this.labelNames = labelNames;
        this.padId = padId;
    }

    /** Causal-LM rows of {@code file} (see {@link Datasets#causalLm}); EOS from the model's config. */
    public static TextTask<CausalLmExample> causalLm(PreTrainedModel model, Tokenizer tok, Path file, int maxLength)
            throws IOException {
        return new TextTask<>(TaskType.CAUSAL_LM, Datasets.causalLm(file, tok, maxLength, eosId(model)), null,
                padId(model));
    }

    /**
     * Classification rows of {@code file} (see {@link Datasets#classification}); every label must have a logit in
     * the model's head.
     */
    public static TextTask<ClassificationExample> classification(PreTrainedModel model, Tokenizer tok, Path file,
                                                                 int maxLength) throws IOException {
        Datasets.ClassificationData d = Datasets.classification(file, tok, maxLength);
        int numLabels = ClassifierHead.numLabels(model.config());
        long maxLabel = d.rows().stream().mapToLong(ClassificationExample::label).max().orElse(0);
        if (maxLabel >= numLabels) {
            throw new IllegalArgumentException(file + ": label " + maxLabel + (d.labelNames() == null ? ""
                    : " (" + d.labelNames().get((int) maxLabel) + ")") + " needs " + (maxLabel + 1) + " labels, but "
                    + model.config().source() + " has num_labels " + numLabels + "; set \"num_labels\": "
                    + (maxLabel + 1) + " (or id2label) there");
        }
        return new TextTask<>(TaskType.SEQ_CLS, d.rows(), d.labelNames(), padId(model));
    }

    /** The rows of {@code file} for {@code type}: SEQ_CLS reads classification rows, anything else causal-LM rows. */
    @SuppressWarnings("unchecked")
    public static TextTask<Object> read(TaskType type, PreTrainedModel model, Tokenizer tok, Path file, int maxLength)
            throws IOException {
        TextTask<?> t = type == TaskType.SEQ_CLS ? classification(model, tok, file, maxLength)
                : causalLm(model, tok, file, maxLength);
        return (TextTask<Object>) t;
    }

    /** SEQ_CLS for a model whose {@code architectures} names a {@code ...ForSequenceClassification}, else CAUSAL_LM. */
    public static TaskType taskOf(Path modelDir) throws IOException {
        List<String> arch = io.peft4j.nn.model.ModelConfig.read(modelDir.resolve("config.json")).architectures();
        return !arch.isEmpty() && arch.get(0).endsWith("ForSequenceClassification") ? TaskType.SEQ_CLS
                : TaskType.CAUSAL_LM;
    }

    public TaskType type() {
        return type;
    }

    public List<E> rows() {
        return rows;
    }

    /** String labels in id order, or null when the data gave integer labels. */
    public List<String> labelNames() {
        return labelNames;
    }

    /** The first {@code n} rows and the rest, as two tasks (a held-out split). */
    public List<TextTask<E>> split(int n) {
        return List.of(new TextTask<>(type, rows.subList(0, n), labelNames, padId),
                new TextTask<>(type, rows.subList(n, rows.size()), labelNames, padId));
    }

    /** A right-padded batch with labels, in {@code m}. */
    @SuppressWarnings("unchecked")
    public ModelInput batch(NDManager m, List<E> batch) {
        return type == TaskType.SEQ_CLS ? Datasets.classificationBatch(m, (List<ClassificationExample>) batch, padId)
                : Datasets.causalLmBatch(m, (List<CausalLmExample>) batch, padId);
    }

    /**
     * The first {@code n} batches of {@code batchSize} rows, going round the rows again when there are too few (the
     * batches LoRA-GA estimates its gradients on).
     */
    public List<ModelInput> cycledBatches(NDManager m, int n, int batchSize) {
        List<ModelInput> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            List<E> batch = new ArrayList<>();
            for (int j = 0; j < batchSize; j++) {
                batch.add(rows.get((i * batchSize + j) % rows.size()));
            }
            out.add(batch(m, batch));
        }
        return out;
    }

    /**
     * The model for rows of {@code type}: with the classification head for SEQ_CLS, else as its {@code architectures}
     * say; quantised to 4 bits when {@code quant} is given.
     */
    public static PreTrainedModel loadModel(String dirOrRepoId, TaskType type, BitsAndBytesConfig quant)
            throws IOException {
        return HfModels.fromPretrained(dirOrRepoId, type == TaskType.SEQ_CLS ? TaskType.SEQ_CLS : null, quant);
    }

    /** Tokens in a batch (before padding), for tokens per second. */
    public long tokens(List<E> batch) {
        long n = 0;
        for (E e : batch) {
            n += e instanceof CausalLmExample c ? c.inputIds().length : ((ClassificationExample) e).inputIds().length;
        }
        return n;
    }

    /**
     * Scores {@code rows} under no-grad: {@code loss} (causal LM: mean over every token that carries a label, so
     * {@code perplexity = exp(loss)} is the corpus perplexity; classification: mean over rows), plus
     * {@code perplexity} and {@code tokens}, or {@code accuracy}; and {@code rows}. The caller sets eval mode.
     */
    public Map<String, Double> evaluate(Function<ModelInput, ModelOutput> forward, NDManager m, List<E> rows,
                                        int batchSize) {
        if (rows.isEmpty()) {
            throw new IllegalArgumentException("nothing to evaluate: no rows");
        }
        double lossSum = 0;
        long weight = 0;
        long correct = 0;
        try (NoGrad ng = NoGrad.enter()) {
            for (int from = 0; from < rows.size(); from += batchSize) {
                List<E> b = rows.subList(from, Math.min(rows.size(), from + batchSize));
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    ModelOutput out = forward.apply(batch(m, b));
                    if (out.loss() == null) {
                        throw new IllegalStateException("the model returned no loss for a labelled batch");
                    }
                    double loss = out.loss().getFloat();
                    if (type == TaskType.SEQ_CLS) {
                        lossSum += loss * b.size();
                        weight += b.size();
                        NDArray logits = out.logits();
                        long[] predicted = logits.reshape(b.size(), -1).argMax(1).toLongArray();
                        for (int i = 0; i < b.size(); i++) {
                            correct += predicted[i] == ((ClassificationExample) b.get(i)).label() ? 1 : 0;
                        }
                    } else {
                        long n = 0;
                        for (E e : b) {
                            n += predictedTokens((CausalLmExample) e);
                        }
                        lossSum += loss * n;
                        weight += n;
                    }
                }
            }
        }
        Map<String, Double> metrics = new LinkedHashMap<>();
        double loss = lossSum / weight;
        metrics.put("loss", loss);
        if (type == TaskType.SEQ_CLS) {
            metrics.put("accuracy", (double) correct / rows.size());
        } else {
            metrics.put("perplexity", Math.exp(loss));
            metrics.put("tokens", (double) weight);
        }
        metrics.put("rows", (double) rows.size());
        return metrics;
    }

    /** {@code loss=.. perplexity=..} or {@code loss=.. accuracy=..} of {@link #evaluate} metrics, key prefix added. */
    public String describe(Map<String, Double> metrics, String prefix) {
        String second = type == TaskType.SEQ_CLS ? "accuracy" : "perplexity";
        return String.format(Locale.ROOT, "%sloss=%.4f %s%s=%.4f", prefix, metrics.get(prefix + "loss"), prefix, second,
                metrics.get(prefix + second));
    }

    /** Labels after the first position (the shifted loss never predicts position 0) that are not ignored. */
    static int predictedTokens(CausalLmExample e) {
        int n = 0;
        long[] l = e.labels();
        for (int i = 1; i < l.length; i++) {
            n += l[i] == Datasets.IGNORE_INDEX ? 0 : 1;
        }
        return n;
    }

    /** The model's single {@code eos_token_id}, appended to completions; null when absent or a list. */
    public static Long eosId(PreTrainedModel model) {
        try {
            int eos = model.config().getInt("eos_token_id", -1);
            return eos >= 0 ? (long) eos : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static long padId(PreTrainedModel model) {
        try {
            return model.config().getInt("pad_token_id", 0);
        } catch (RuntimeException e) {
            return 0; // a null pad_token_id: padding positions are masked anyway
        }
    }

    /** The model's {@code tokenizer.json}, loaded only when a row has text. */
    public static final class LazyTokenizer implements Tokenizer, AutoCloseable {
        private final Path dir;
        private HfTokenizer tok;

        public LazyTokenizer(Path dir) {
            this.dir = dir;
        }

        @Override
        public long[] encode(String text, boolean addSpecialTokens) {
            if (tok == null) {
                if (!HfTokenizer.present(dir)) {
                    throw new IllegalArgumentException("the data has text rows but " + dir
                            + " has no tokenizer.json; give \"input_ids\" instead");
                }
                try {
                    tok = HfTokenizer.load(dir);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
            return tok.encode(text, addSpecialTokens);
        }

        @Override
        public void close() {
            if (tok != null) {
                tok.close();
            }
        }
    }
}
