package io.peft4j.transformers.distilbert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.ClassifierHead;
import io.peft4j.transformers.TaskHeadCheckpoints;
import io.peft4j.transformers.bert.BertModel;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Set;

/**
 * transformers' {@code DistilBertForSequenceClassification}: {@code distilbert}, then on the first token's
 * hidden state {@code pre_classifier} (dim to dim), ReLU, {@code dropout} ({@code seq_classif_dropout}) and
 * {@code classifier}. The loss follows transformers' rules (see {@link ClassifierHead#loss}).
 */
public class DistilBertForSequenceClassification extends PreTrainedModel {
    private static final Set<String> HEAD_KEYS = Set.of("pre_classifier.weight", "pre_classifier.bias",
            "classifier.weight", "classifier.bias");

    private final DistilBertConfig cfg;

    /** A randomly initialised model (transformers' init). */
    public DistilBertForSequenceClassification(NDManager manager, DistilBertConfig config) {
        this(manager, config, true);
    }

    /** {@code init = false} keeps the layers' cheap default init, for weights a checkpoint is about to replace. */
    DistilBertForSequenceClassification(NDManager manager, DistilBertConfig config, boolean init) {
        super(manager, config.modelConfig());
        this.cfg = config;
        registerModule("distilbert", new DistilBertModel(manager, config, init));
        Linear pre = registerModule("pre_classifier", new Linear(manager, config.dim(), config.dim(), true));
        Linear classifier = registerModule("classifier", new Linear(manager, config.dim(), config.numLabels(), true));
        registerModule("dropout", new Dropout(config.seqClassifDropout()));
        if (init) {
            BertModel.initWeights(pre, manager, config.initializerRange(), null);
            BertModel.initWeights(classifier, manager, config.initializerRange(), null);
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory saved by any
     * DistilBERT class. A checkpoint without the classification head (a pre-trained base such as
     * distilbert-base-uncased) leaves it newly initialised; other heads' tensors ({@code vocab_*}) are
     * skipped; both with a warning. The returned model is in eval mode and owns a new manager: close it.
     */
    public static DistilBertForSequenceClassification fromPretrained(Path dir) throws IOException {
        // Like transformers' fast init: only what the checkpoint lacks gets the (costly) normal init.
        return Checkpoints.fromPretrained(dir, DistilBertConfig::of,
                (nd, c) -> new DistilBertForSequenceClassification(nd, c, false),
                (m, d) -> BertModel.initNewlyInitialized(m, m.loadWeights(d).newlyInitialized(), m.manager(),
                        m.distilBertConfig().initializerRange()));
    }

    /** Loads a safetensors checkpoint (a file, or a directory with one file or a sharded index) by name. */
    public TaskHeadCheckpoints.Report loadWeights(Path dirOrFile) throws IOException {
        return TaskHeadCheckpoints.load(this, distilbert(), "distilbert", dirOrFile, manager(), HEAD_KEYS,
                DistilBertModel.LEGACY_BUFFERS);
    }

    public DistilBertConfig distilBertConfig() {
        return cfg;
    }

    public DistilBertModel distilbert() {
        return (DistilBertModel) child("distilbert");
    }

    /** As transformers' DistilBERT: no past key/values, so no prefix tuning. */
    @Override
    public boolean supportsPastKeyValues() {
        return false;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("distilbert.embeddings.word_embeddings");
    }

    /**
     * None, as transformers' {@code get_output_embeddings()}: the classifier is not an output embedding
     * (PEFT's {@code all-linear} leaves it out for SEQ_CLS by its own rule).
     */
    @Override
    public String outputEmbeddingsPath() {
        return null;
    }

    @Override
    public ModelOutput forward(ModelInput input) {
        DistilBertModel.Output out = distilbert().encode(input);
        NDArray first = out.lastHiddenState().get(":, 0");
        NDArray pooled = call("dropout", F.relu(call("pre_classifier", first)));
        NDArray logits = call("classifier", pooled);
        NDArray loss = input.labels() == null ? null
                : ClassifierHead.loss(logits, input.labels(), cfg.numLabels(), cfg.problemType());
        return new ModelOutput(logits, loss, out.hiddenStates());
    }

    @Override
    public void initMissingWeights(java.util.List<String> names) {
        BertModel.initNewlyInitialized(this, names, manager(), cfg.initializerRange());
    }

}
