package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.ClassifierHead;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * GPT-2 with a classification head, as transformers 4.45's {@code GPT2ForSequenceClassification}: the
 * {@link Gpt2Model} trunk at {@code transformer} and {@code score} (Linear n_embd to num_labels, no bias),
 * read at each row's last non-padding token. Logits are {@code [B, num_labels]}.
 *
 * <p>The last token is found the way transformers finds it: the first {@code pad_token_id} in
 * {@code input_ids}, minus one, modulo the sequence length (so a row without padding, or a left-padded one,
 * uses the final position). Without a {@code pad_token_id} only batches of one are accepted, as in
 * transformers; with {@code inputs_embeds} the final position is used.
 */
public class Gpt2ForSequenceClassification extends PreTrainedModel {
    private static final Logger LOG = LoggerFactory.getLogger(Gpt2ForSequenceClassification.class);

    private final Gpt2Config cfg;

    /** A randomly initialised model (transformers' GPT-2 init; {@code score} N(0, initializer_range)). */
    public Gpt2ForSequenceClassification(NDManager manager, Gpt2Config config) {
        super(manager, config.modelConfig());
        this.cfg = config;
        registerModule("transformer", new Gpt2Model(manager, config));
        registerModule("score", new Linear(manager, config.nEmbd(), config.numLabels(), false));
        Gpt2Model.initWeights(this, manager, config);
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory. A plain
     * GPT-2 checkpoint (either key layout, {@code lm_head.weight} ignored) is accepted without
     * {@code score.weight}: the head then keeps its random init, with a warning, as transformers does when
     * fine-tuning starts from a base model. The returned model is in eval mode and owns a new manager.
     */
    public static Gpt2ForSequenceClassification fromPretrained(Path dir) throws IOException {
        return Checkpoints.fromPretrained(dir, Gpt2Config::of, Gpt2ForSequenceClassification::new,
                Gpt2ForSequenceClassification::loadWeights);
    }

    /** Loads a safetensors checkpoint by name; see {@link #fromPretrained(Path)} for what may be absent. */
    public void loadWeights(Path dirOrFile) throws IOException {
        List<String> names = Gpt2Model.loadCheckpoint(this, dirOrFile, manager(),
                name -> name.equals("lm_head.weight"), Set.of("score.weight"));
        if (!names.contains("score.weight")) {
            LOG.warn("{}: no score.weight in the checkpoint; the classification head is newly initialised "
                    + "and should be trained", dirOrFile);
        }
    }

    @Override
    public void initMissingWeights(List<String> names) {
        Gpt2Model.initMissing(this, names, manager(), cfg);
    }

    public Gpt2Config gpt2Config() {
        return cfg;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("transformer.wte");
    }

    /** No language-model head. */
    @Override
    public String outputEmbeddingsPath() {
        return null;
    }

    @Override
    public ModelOutput forward(ModelInput input) {
        Gpt2Model transformer = (Gpt2Model) child("transformer");
        Gpt2Model.Output out = transformer.forward(input);
        NDArray hidden = out.lastHidden();
        long batch = hidden.getShape().get(0);
        long seq = hidden.getShape().get(1);
        long h = hidden.getShape().get(2);
        long[] last = lastTokenIndices(input.inputIds(), batch, seq);
        // Pool first, then score: the head is row-wise, so this equals transformers' score-then-pool.
        NDArray index = hidden.getManager().create(last, new Shape(batch, 1, 1)).broadcast(batch, 1, h);
        NDArray pooled = hidden.gather(index, 1).reshape(batch, h);
        NDArray logits = call("score", pooled);
        NDArray loss = input.labels() == null ? null : loss(logits, input.labels());
        return new ModelOutput(logits, loss, out.hiddenStates(), out.presentKeyValues());
    }

    /**
     * Per row, the position whose logits transformers reports: {@code (argmax(ids == pad) - 1) mod T}, i.e.
     * the token before the first pad, or the last position when there is none.
     */
    long[] lastTokenIndices(NDArray inputIds, long batch, long seq) {
        Integer pad = cfg.padTokenId();
        if (pad == null && batch != 1) {
            throw new IllegalArgumentException("Cannot handle batch sizes > 1 if no padding token is defined: "
                    + "set pad_token_id in the config (" + cfg.modelConfig().source() + ") to read each row's "
                    + "last non-padding token");
        }
        long[] out = new long[(int) batch];
        if (pad == null || inputIds == null) {
            if (pad != null) {
                LOG.warn("GPT2ForSequenceClassification got inputs_embeds: padding tokens cannot be detected, "
                        + "using the last position of every row");
            }
            java.util.Arrays.fill(out, seq - 1);
            return out;
        }
        long[] ids = inputIds.toType(DataType.INT64, false).toLongArray();
        for (int b = 0; b < batch; b++) {
            long first = 0; // argmax of an all-false row is 0
            for (int t = 0; t < seq; t++) {
                if (ids[(int) (b * seq + t)] == pad) {
                    first = t;
                    break;
                }
            }
            out[b] = Math.floorMod(first - 1, seq);
        }
        return out;
    }

    /** transformers' sequence-classification loss (see {@link ClassifierHead#loss}). */
    NDArray loss(NDArray logits, NDArray labels) {
        return ClassifierHead.loss(logits, labels, cfg.numLabels(), cfg.problemType());
    }
}
