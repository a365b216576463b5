package io.peft4j.transformers.bert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleList;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.LayerNorm;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.TaskHeadCheckpoints;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;

/**
 * The BERT encoder, numerically following transformers 4.45's {@code BertModel}: word + token-type +
 * absolute position embeddings, post-norm transformer layers with a GELU MLP, and a tanh pooler over the
 * first ([CLS]) token. Module and parameter paths are transformers' names ({@code embeddings.word_embeddings},
 * {@code encoder.layer.0.attention.self.query}, ...), so checkpoints load by name and PEFT finds
 * {@code query}/{@code value} by path.
 *
 * <p>Every parent calls its children through {@link Module#child(String)} at call time: a child replaced by
 * an adapter wrapper is honoured. Call {@link #forward(ModelInput)} inside an {@code NDScope}.
 */
public class BertModel extends PreTrainedModel {
    private static final Logger LOG = LoggerFactory.getLogger(BertModel.class);

    /** transformers' extended attention mask puts {@code torch.finfo(float32).min} on padding keys. */
    static final float MASK_MIN = -Float.MAX_VALUE;

    /** Non-persistent buffers that checkpoints of older transformers versions still contain. */
    static final Predicate<String> LEGACY_BUFFERS =
            n -> n.endsWith("embeddings.position_ids") || n.endsWith("embeddings.token_type_ids");

    static final Set<String> POOLER_KEYS = Set.of("pooler.dense.weight", "pooler.dense.bias");

    private final BertConfig cfg;

    /** The last hidden state, the pooled [CLS] output (null without a pooler) and optional hidden states. */
    public record Output(NDArray lastHiddenState, NDArray poolerOutput, List<NDArray> hiddenStates) {}

    /** A randomly initialised model with a pooler. */
    public BertModel(NDManager manager, BertConfig config) {
        this(manager, config, true);
    }

    /**
     * A randomly initialised model (transformers' init: N(0, initializer_range) linears and embeddings, zero
     * biases, the padding row zeroed); {@code addPoolingLayer} as in transformers (false for masked-LM use).
     */
    public BertModel(NDManager manager, BertConfig config, boolean addPoolingLayer) {
        this(manager, config, addPoolingLayer, true);
    }

    /** {@code init = false} keeps the layers' cheap default init, for weights a checkpoint is about to replace. */
    BertModel(NDManager manager, BertConfig config, boolean addPoolingLayer, boolean init) {
        super(manager, config.modelConfig());
        this.cfg = config;
        registerModule("embeddings", new BertEmbeddings(manager, config));
        registerModule("encoder", new BertEncoder(manager, config));
        if (addPoolingLayer) {
            registerModule("pooler", new BertPooler(manager, config));
        }
        if (init) {
            initWeights(this, manager, config.initializerRange(), config.padTokenId());
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory saved by any
     * BERT class ({@code BertModel}, {@code BertForSequenceClassification}, {@code BertForMaskedLM}, ...).
     * Other heads' tensors are skipped with a warning; a checkpoint without a pooler leaves it newly
     * initialised, with a warning. The returned model is in eval mode and owns a new manager: close it.
     */
    public static BertModel fromPretrained(Path dir) throws IOException {
        // Like transformers' fast init: only what the checkpoint lacks gets the (costly) normal init.
        return Checkpoints.fromPretrained(dir, BertConfig::of, (nd, c) -> new BertModel(nd, c, true, false),
                (m, d) -> initNewlyInitialized(m, m.loadWeights(d).newlyInitialized(), m.manager(),
                        m.bertConfig().initializerRange()));
    }

    /** Loads a safetensors checkpoint (a file, or a directory with one file or a sharded index) by name. */
    public TaskHeadCheckpoints.Report loadWeights(Path dirOrFile) throws IOException {
        TaskHeadCheckpoints.Report r = TaskHeadCheckpoints.load(this, this, "bert", dirOrFile, manager(),
                hasChild("pooler") ? POOLER_KEYS : Set.of(), LEGACY_BUFFERS);
        warnIfPoolerMissing(r.newlyInitialized(), "", dirOrFile);
        return r;
    }

    /** A checkpoint saved with {@code add_pooling_layer=False} leaves the pooler random: say so plainly. */
    static void warnIfPoolerMissing(List<String> fresh, String prefix, Path source) {
        if (fresh.contains(prefix + "pooler.dense.weight")) {
            LOG.warn("{} has no pooler weights (saved with add_pooling_layer=False, e.g. by BertForMaskedLM): "
                    + "{}pooler.dense is randomly initialised, so the pooled [CLS] output{} is untrained until "
                    + "fine-tuned", source, prefix, prefix.isEmpty() ? "" : " (what the classifier reads)");
        }
    }

    public BertConfig bertConfig() {
        return cfg;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("embeddings.word_embeddings");
    }

    /** BERT has no output embeddings (transformers' {@code get_output_embeddings()} is None). */
    @Override
    public String outputEmbeddingsPath() {
        return null;
    }

    /**
     * Runs the encoder. {@link ModelOutput#logits()} holds the last hidden state {@code [B, T, hidden]}
     * (a base model has no logits); use {@link #encode} for the pooled output.
     */
    @Override
    public ModelOutput forward(ModelInput input) {
        if (input.labels() != null) {
            throw new IllegalArgumentException("BertModel has no head to compute a loss; labels must be null");
        }
        Output out = encode(input);
        return new ModelOutput(out.lastHiddenState(), null, out.hiddenStates());
    }

    /**
     * Embeddings, encoder and pooler. {@code pastKeyValues} (per layer {@code {key, value}} of shape
     * {@code [B, heads, P, head_dim]}, as prefix tuning supplies them) are prepended to every layer's keys
     * and values, and positions then start at {@code P}, as in transformers; the attention mask, when
     * given, covers {@code P + T} keys.
     */
    public Output encode(ModelInput input) {
        NDArray ids = input.inputIds();
        NDArray embeds = input.inputsEmbeds();
        Shape s = ids != null ? ids.getShape() : embeds.getShape();
        long batch = s.get(0);
        long seq = s.get(1);
        List<NDArray[]> past = input.pastKeyValues();
        BertEncoder encoder = (BertEncoder) child("encoder");
        if (past != null && past.size() != encoder.numLayers()) {
            throw new IllegalArgumentException("past_key_values has " + past.size() + " layers, model has "
                    + encoder.numLayers());
        }
        long pastLen = past == null || past.isEmpty() ? 0 : past.get(0)[0].getShape().get(2);

        BertEmbeddings embeddings = (BertEmbeddings) child("embeddings");
        NDArray hidden = embeddings.forward(ids, embeds, input.tokenTypeIds(), input.positionIds(), pastLen);
        NDArray mask = extendedAttentionMask(input.attentionMask(), batch, pastLen + seq);

        List<NDArray> hiddenStates = input.outputHiddenStates() ? new ArrayList<>() : null;
        hidden = encoder.forward(hidden, mask, past, hiddenStates);
        NDArray pooled = hasChild("pooler") ? call("pooler", hidden) : null;
        return new Output(hidden, pooled, hiddenStates);
    }

    /**
     * transformers' {@code get_extended_attention_mask} for an encoder: {@code [B, 1, 1, keys]}, 0 where a
     * key may be attended to and float32 min on padding; null when there is no mask (all keys visible).
     */
    static NDArray extendedAttentionMask(NDArray attentionMask, long batch, long keys) {
        if (attentionMask == null) {
            return null;
        }
        Shape ms = attentionMask.getShape();
        if (ms.dimension() != 2 || ms.get(0) != batch || ms.get(1) != keys) {
            throw new IllegalArgumentException("attention_mask must have shape (" + batch + ", " + keys
                    + ") = (batch, past + seq), got " + ms);
        }
        NDArray padding = attentionMask.eq(0).toType(DataType.FLOAT32, false).reshape(batch, 1, 1, keys);
        return F.mul(padding, MASK_MIN);
    }

    /**
     * transformers' {@code _init_weights} for BERT-family models below {@code root}: linears and embeddings
     * N(0, std), zero biases (LayerNorms start at 1 and 0), and the word embeddings' {@code padding_idx} row
     * zeroed.
     */
    public static void initWeights(Module root, NDManager manager, double std, Integer padTokenId) {
        for (Map.Entry<String, Module> e : root.namedModules().entrySet()) {
            Module m = e.getValue();
            if (m instanceof Linear || m instanceof Embedding) {
                Param w = m.param("weight");
                if (Init.isDeferred(w.data())) {
                    continue;
                }
                NDArray init = manager.randomNormal(0f, (float) std, w.shape(), DataType.FLOAT32);
                if (m instanceof Embedding emb && e.getKey().endsWith("word_embeddings") && padTokenId != null
                        && padTokenId >= 0 && padTokenId < emb.numEmbeddings()) {
                    // In place before the array becomes a parameter (autograd forbids it on a leaf after).
                    init.set(new NDIndex(padTokenId.longValue()), 0f);
                }
                w.setData(init);
                Param b = m.paramOrNull("bias");
                if (b != null) {
                    b.setData(manager.zeros(b.shape()));
                }
            }
        }
    }

    /** Applies {@link #initWeights} to the modules owning the {@code fresh} state names (a load's newly initialised). */
    public static void initNewlyInitialized(Module model, List<String> fresh, NDManager manager, double std) {
        for (String path : Checkpoints.owners(fresh)) {
            initWeights(model.getSubmodule(path), manager, std, null);
        }
    }

    // ---------------------------------------------------------------------------------------------------

    /** {@code LayerNorm(word + token_type + position)} then dropout. */
    public static class BertEmbeddings extends Module {
        private final int maxPositions;

        public BertEmbeddings(NDManager manager, BertConfig cfg) {
            this.maxPositions = cfg.maxPositionEmbeddings();
            registerModule("word_embeddings", new Embedding(manager, cfg.vocabSize(), cfg.hiddenSize()));
            registerModule("position_embeddings",
                    new Embedding(manager, cfg.maxPositionEmbeddings(), cfg.hiddenSize()));
            registerModule("token_type_embeddings", new Embedding(manager, cfg.typeVocabSize(), cfg.hiddenSize()));
            registerModule("LayerNorm", new LayerNorm(manager, cfg.hiddenSize(), cfg.layerNormEps()));
            registerModule("dropout", new Dropout(cfg.hiddenDropoutProb()));
        }

        /**
         * @param ids {@code [B, T]} or null when {@code embeds} ({@code [B, T, hidden]}) is given
         * @param tokenTypeIds {@code [B, T]} or null for all zeros
         * @param positionIds {@code [B or 1, T]} or null for {@code pastLen .. pastLen + T - 1}
         */
        public NDArray forward(NDArray ids, NDArray embeds, NDArray tokenTypeIds, NDArray positionIds,
                               long pastLen) {
            NDArray x = ids != null ? call("word_embeddings", ids) : embeds;
            NDManager nd = x.getManager();
            long batch = x.getShape().get(0);
            long seq = x.getShape().get(1);
            if (tokenTypeIds == null) {
                tokenTypeIds = nd.zeros(new Shape(batch, seq), DataType.INT64);
            } else if (!tokenTypeIds.getShape().equals(new Shape(batch, seq))) {
                throw new IllegalArgumentException("token_type_ids must have shape (" + batch + ", " + seq
                        + "), got " + tokenTypeIds.getShape());
            }
            if (positionIds == null) {
                if (pastLen + seq > maxPositions) {
                    throw new IllegalArgumentException("sequence length " + (pastLen + seq)
                            + " exceeds max_position_embeddings " + maxPositions);
                }
                positionIds = nd.arange(pastLen, pastLen + seq).toType(DataType.INT64, false).reshape(1, seq);
            }
            // Same summation order as transformers: (words + token types) + positions.
            x = x.add(call("token_type_embeddings", tokenTypeIds)).add(call("position_embeddings", positionIds));
            return call("dropout", call("LayerNorm", x));
        }
    }

    /** {@code layer.0 .. layer.N-1}. */
    public static class BertEncoder extends Module {
        public BertEncoder(NDManager manager, BertConfig cfg) {
            ModuleList layers = registerModule("layer", new ModuleList());
            for (int i = 0; i < cfg.numHiddenLayers(); i++) {
                layers.add(new BertLayer(manager, cfg));
            }
        }

        public int numLayers() {
            return ((ModuleList) child("layer")).size();
        }

        /** Runs every layer; {@code hiddenStates}, when not null, receives the input and each layer's output. */
        public NDArray forward(NDArray hidden, NDArray mask, List<NDArray[]> past, List<NDArray> hiddenStates) {
            ModuleList layers = (ModuleList) child("layer");
            if (hiddenStates != null) {
                hiddenStates.add(hidden);
            }
            for (int i = 0; i < layers.size(); i++) {
                hidden = ((BertLayer) layers.get(i)).forward(hidden, mask, past == null ? null : past.get(i));
                if (hiddenStates != null) {
                    hiddenStates.add(hidden);
                }
            }
            return hidden;
        }
    }

    /** Post-norm block: {@code attention} (self + output), then {@code intermediate} and {@code output}. */
    public static class BertLayer extends Module {
        public BertLayer(NDManager manager, BertConfig cfg) {
            registerModule("attention", new BertAttention(manager, cfg));
            registerModule("intermediate", new BertIntermediate(manager, cfg));
            registerModule("output", new BertOutput(manager, cfg));
        }

        public NDArray forward(NDArray x, NDArray mask, NDArray[] past) {
            NDArray a = ((BertAttention) child("attention")).forward(x, mask, past);
            NDArray h = call("intermediate", a);
            return ((BertOutput) child("output")).forward(h, a);
        }
    }

    /** {@code self} (query/key/value attention) and {@code output} (dense, residual, LayerNorm). */
    public static class BertAttention extends Module {
        public BertAttention(NDManager manager, BertConfig cfg) {
            registerModule("self", new BertSelfAttention(manager, cfg));
            registerModule("output", new BertSelfOutput(manager, cfg));
        }

        public NDArray forward(NDArray x, NDArray mask, NDArray[] past) {
            NDArray ctx = ((BertSelfAttention) child("self")).forward(x, mask, past);
            return ((BertSelfOutput) child("output")).forward(ctx, x);
        }
    }

    /** Bidirectional multi-head attention; returns the heads' context, concatenated, before {@code dense}. */
    public static class BertSelfAttention extends Module {
        private final int numHeads;
        private final int headDim;

        public BertSelfAttention(NDManager manager, BertConfig cfg) {
            this.numHeads = cfg.numAttentionHeads();
            this.headDim = cfg.headDim();
            long h = cfg.hiddenSize();
            registerModule("query", new Linear(manager, h, h, true));
            registerModule("key", new Linear(manager, h, h, true));
            registerModule("value", new Linear(manager, h, h, true));
            registerModule("dropout", new Dropout(cfg.attentionProbsDropoutProb()));
        }

        /**
         * @param mask additive {@code [B, 1, 1, keys]} or null
         * @param past {@code {key, value}} of shape {@code [B, heads, P, head_dim]} prepended to this
         *             layer's keys and values (prefix tuning), or null
         */
        public NDArray forward(NDArray x, NDArray mask, NDArray[] past) {
            long b = x.getShape().get(0);
            long t = x.getShape().get(1);
            // 1/sqrt(head_dim) is applied to q rather than to the [T, keys] scores: the same softmax input
            // up to rounding, with fewer multiplications.
            NDArray q = F.mul(heads(call("query", x), b, t), (float) (1.0 / Math.sqrt(headDim)));
            NDArray k = heads(call("key", x), b, t);
            NDArray v = heads(call("value", x), b, t);
            if (past != null) {
                k = past[0].concat(k, 2);
                v = past[1].concat(v, 2);
            }
            NDArray scores = q.matMul(k.transpose(0, 1, 3, 2));
            if (mask != null) {
                scores = scores.add(mask);
            }
            NDArray probs = call("dropout", scores.softmax(-1));
            return probs.matMul(v).transpose(0, 2, 1, 3).reshape(b, t, (long) numHeads * headDim);
        }

        /** {@code [B, T, hidden]} to {@code [B, heads, T, head_dim]}. */
        private NDArray heads(NDArray x, long b, long t) {
            return x.reshape(b, t, numHeads, headDim).transpose(0, 2, 1, 3);
        }
    }

    /** {@code LayerNorm(dropout(dense(context)) + input)}. */
    public static class BertSelfOutput extends Module {
        public BertSelfOutput(NDManager manager, BertConfig cfg) {
            registerModule("dense", new Linear(manager, cfg.hiddenSize(), cfg.hiddenSize(), true));
            registerModule("LayerNorm", new LayerNorm(manager, cfg.hiddenSize(), cfg.layerNormEps()));
            registerModule("dropout", new Dropout(cfg.hiddenDropoutProb()));
        }

        public NDArray forward(NDArray hidden, NDArray input) {
            return call("LayerNorm", call("dropout", call("dense", hidden)).add(input));
        }
    }

    /** {@code act(dense(x))}, hidden to intermediate size. */
    public static class BertIntermediate extends Module {
        private final BertConfig.Activation act;

        public BertIntermediate(NDManager manager, BertConfig cfg) {
            this.act = cfg.hiddenAct();
            registerModule("dense", new Linear(manager, cfg.hiddenSize(), cfg.intermediateSize(), true));
        }

        @Override
        public NDArray forward(NDArray x) {
            return act.apply(call("dense", x));
        }
    }

    /** {@code LayerNorm(dropout(dense(h)) + input)}, intermediate back to hidden size. */
    public static class BertOutput extends Module {
        public BertOutput(NDManager manager, BertConfig cfg) {
            registerModule("dense", new Linear(manager, cfg.intermediateSize(), cfg.hiddenSize(), true));
            registerModule("LayerNorm", new LayerNorm(manager, cfg.hiddenSize(), cfg.layerNormEps()));
            registerModule("dropout", new Dropout(cfg.hiddenDropoutProb()));
        }

        public NDArray forward(NDArray hidden, NDArray input) {
            return call("LayerNorm", call("dropout", call("dense", hidden)).add(input));
        }
    }

    /** {@code tanh(dense(hidden[:, 0]))}: the [CLS] token's representation. */
    public static class BertPooler extends Module {
        public BertPooler(NDManager manager, BertConfig cfg) {
            registerModule("dense", new Linear(manager, cfg.hiddenSize(), cfg.hiddenSize(), true));
        }

        @Override
        public NDArray forward(NDArray hidden) {
            return call("dense", hidden.get(":, 0")).tanh();
        }
    }

    @Override
    public void initMissingWeights(java.util.List<String> names) {
        BertModel.initNewlyInitialized(this, names, manager(), cfg.initializerRange());
    }

}
