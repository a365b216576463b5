package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.ClassifierHead;
import io.peft4j.transformers.TaskHeadCheckpoints;

import java.io.IOException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * transformers' {@code BertForSequenceClassification}: {@code bert} (a {@link BertModel} with pooler),
 * {@code dropout} and a {@code classifier} Linear on the pooled [CLS] output. With labels it computes
 * transformers' loss: mean squared error for one label, cross-entropy for integer labels, binary
 * cross-entropy with logits for multi-label targets (or as {@code problem_type} says).
 */
public class BertForSequenceClassification extends PreTrainedModel {
    private final BertConfig cfg;

    /** A randomly initialised model (transformers' init). */
    public BertForSequenceClassification(NDManager manager, BertConfig config) {
        this(manager, config, true);
    }

    /** {@code init = false} keeps the layers' cheap default init, for weights a checkpoint is about to replace. */
    BertForSequenceClassification(NDManager manager, BertConfig config, boolean init) {
        super(manager, config.modelConfig());
        this.cfg = config;
        registerModule("bert", new BertModel(manager, config, true, init));
        registerModule("dropout", new Dropout(config.effectiveClassifierDropout()));
        Linear classifier = registerModule("classifier",
                new Linear(manager, config.hiddenSize(), config.numLabels(), true));
        if (init) {
            BertModel.initWeights(classifier, manager, config.initializerRange(), null);
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory saved by any
     * BERT class. A checkpoint without the classifier (a pre-trained base such as bert-base-uncased) leaves it
     * newly initialised; other heads' tensors ({@code cls.*}) are skipped; both with a warning. The returned
     * model is in eval mode and owns a new manager: close it.
     */
    public static BertForSequenceClassification fromPretrained(Path dir) throws IOException {
        // Like transformers' fast init: only what the checkpoint lacks gets the (costly) normal init.
        return Checkpoints.fromPretrained(dir, BertConfig::of, (nd, c) -> new BertForSequenceClassification(nd, c, false),
                (m, d) -> BertModel.initNewlyInitialized(m, m.loadWeights(d).newlyInitialized(), m.manager(),
                        m.bertConfig().initializerRange()));
    }

    /** Loads a safetensors checkpoint (a file, or a directory with one file or a sharded index) by name. */
    public TaskHeadCheckpoints.Report loadWeights(Path dirOrFile) throws IOException {
        Set<String> optional = new HashSet<>(Set.of("classifier.weight", "classifier.bias"));
        BertModel.POOLER_KEYS.forEach(k -> optional.add("bert." + k));
        TaskHeadCheckpoints.Report r = TaskHeadCheckpoints.load(this, bert(), "bert", dirOrFile, manager(),
                optional, BertModel.LEGACY_BUFFERS);
        BertModel.warnIfPoolerMissing(r.newlyInitialized(), "bert.", dirOrFile);
        return r;
    }

    public BertConfig bertConfig() {
        return cfg;
    }

    public BertModel bert() {
        return (BertModel) child("bert");
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("bert.embeddings.word_embeddings");
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
        BertModel.Output out = bert().encode(input);
        NDArray logits = call("classifier", call("dropout", out.poolerOutput()));
        NDArray loss = input.labels() == null ? null
                : ClassifierHead.loss(logits, input.labels(), cfg.numLabels(), cfg.problemType());
        return new ModelOutput(logits, loss, out.hiddenStates());
    }

    @Override
    public void initMissingWeights(java.util.List<String> names) {
        BertModel.initNewlyInitialized(this, names, manager(), cfg.initializerRange());
    }

}
