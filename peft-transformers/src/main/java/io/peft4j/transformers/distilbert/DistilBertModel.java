package io.peft4j.transformers.distilbert;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleList;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.LayerNorm;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.TaskHeadCheckpoints;
import io.peft4j.transformers.bert.BertModel;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.Predicate;

/**
 * The DistilBERT encoder, numerically following transformers 4.45's {@code DistilBertModel}: word + learned
 * position embeddings (no token types), then post-norm transformer blocks. Module and parameter paths are
 * transformers' names ({@code embeddings.word_embeddings}, {@code transformer.layer.0.attention.q_lin}, ...),
 * so checkpoints load by name and PEFT finds {@code q_lin}/{@code v_lin} by path.
 *
 * <p>Every parent calls its children through {@link Module#child(String)} at call time: a child replaced by
 * an adapter wrapper is honoured. Call {@link #forward(ModelInput)} inside an {@code NDScope}.
 */
public class DistilBertModel extends PreTrainedModel {
    /** Masked attention scores are set to {@code torch.finfo(float32).min}. */
    static final float MASK_MIN = -Float.MAX_VALUE;

    /** A non-persistent buffer that checkpoints of older transformers versions still contain. */
    static final Predicate<String> LEGACY_BUFFERS = n -> n.endsWith("embeddings.position_ids");

    private final DistilBertConfig cfg;

    /** The last hidden state and, when asked for, the embedding output followed by every layer's output. */
    public record Output(NDArray lastHiddenState, List<NDArray> hiddenStates) {}

    /**
     * A randomly initialised model (transformers' init: N(0, initializer_range) linears and embeddings, zero
     * biases, the padding row zeroed).
     */
    public DistilBertModel(NDManager manager, DistilBertConfig config) {
        this(manager, config, true);
    }

    /** {@code init = false} keeps the layers' cheap default init, for weights a checkpoint is about to replace. */
    DistilBertModel(NDManager manager, DistilBertConfig config, boolean init) {
        super(manager, config.modelConfig());
        this.cfg = config;
        registerModule("embeddings", new Embeddings(manager, config));
        registerModule("transformer", new Transformer(manager, config));
        if (init) {
            BertModel.initWeights(this, manager, config.initializerRange(), config.padTokenId());
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory saved by any
     * DistilBERT class ({@code DistilBertModel}, {@code DistilBertForMaskedLM}, ...); other heads' tensors are
     * skipped with a warning. The returned model is in eval mode and owns a new manager: close it.
     */
    public static DistilBertModel fromPretrained(Path dir) throws IOException {
        // Like transformers' fast init: only what the checkpoint lacks gets the (costly) normal init.
        return Checkpoints.fromPretrained(dir, DistilBertConfig::of, (nd, c) -> new DistilBertModel(nd, c, false),
                (m, d) -> BertModel.initNewlyInitialized(m, m.loadWeights(d).newlyInitialized(), m.manager(),
                        m.distilBertConfig().initializerRange()));
    }

    /** Loads a safetensors checkpoint (a file, or a directory with one file or a sharded index) by name. */
    public TaskHeadCheckpoints.Report loadWeights(Path dirOrFile) throws IOException {
        return TaskHeadCheckpoints.load(this, this, "distilbert", dirOrFile, manager(), Set.of(), LEGACY_BUFFERS);
    }

    public DistilBertConfig distilBertConfig() {
        return cfg;
    }

    /** As transformers' DistilBERT: no past key/values, so no prefix tuning. */
    @Override
    public boolean supportsPastKeyValues() {
        return false;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("embeddings.word_embeddings");
    }

    /** DistilBERT has no output embeddings (transformers' {@code get_output_embeddings()} is None). */
    @Override
    public String outputEmbeddingsPath() {
        return null;
    }

    /**
     * Runs the encoder. {@link ModelOutput#logits()} holds the last hidden state {@code [B, T, dim]} (a base
     * model has no logits).
     */
    @Override
    public ModelOutput forward(ModelInput input) {
        if (input.labels() != null) {
            throw new IllegalArgumentException("DistilBertModel has no head to compute a loss; labels must be null");
        }
        Output out = encode(input);
        return new ModelOutput(out.lastHiddenState(), null, out.hiddenStates());
    }

    /**
     * Embeddings and transformer blocks. DistilBERT's forward takes no token type ids, position ids or past
     * key/values (transformers rejects them too): they must be null.
     */
    public Output encode(ModelInput input) {
        if (input.tokenTypeIds() != null) {
            throw new IllegalArgumentException("DistilBERT has no token type embeddings; token_type_ids must be null");
        }
        if (input.positionIds() != null) {
            throw new IllegalArgumentException("DistilBERT does not take position_ids; they must be null");
        }
        if (input.pastKeyValues() != null) {
            throw new IllegalArgumentException("DistilBERT does not support past_key_values (prefix tuning)");
        }
        NDArray x = ((Embeddings) child("embeddings")).forward(input.inputIds(), input.inputsEmbeds());
        long batch = x.getShape().get(0);
        long seq = x.getShape().get(1);
        NDArray mask = null;
        if (input.attentionMask() != null) {
            NDArray m = input.attentionMask();
            if (!m.getShape().equals(new Shape(batch, seq))) {
                throw new IllegalArgumentException("attention_mask must have shape (" + batch + ", " + seq
                        + "), got " + m.getShape());
            }
            // transformers masked_fill()s scores with float32 min; adding it gives the same softmax.
            mask = F.mul(m.eq(0).toType(DataType.FLOAT32, false).reshape(batch, 1, 1, seq), MASK_MIN);
        }
        List<NDArray> hiddenStates = input.outputHiddenStates() ? new ArrayList<>() : null;
        x = ((Transformer) child("transformer")).forward(x, mask, hiddenStates);
        return new Output(x, hiddenStates);
    }

    // ---------------------------------------------------------------------------------------------------

    /** {@code LayerNorm(word + position)} then dropout. */
    public static class Embeddings extends Module {
        private final int maxPositions;

        public Embeddings(NDManager manager, DistilBertConfig cfg) {
            this.maxPositions = cfg.maxPositionEmbeddings();
            registerModule("word_embeddings", new Embedding(manager, cfg.vocabSize(), cfg.dim()));
            registerModule("position_embeddings", new Embedding(manager, cfg.maxPositionEmbeddings(), cfg.dim()));
            registerModule("LayerNorm", new LayerNorm(manager, cfg.dim(), DistilBertConfig.LAYER_NORM_EPS));
            registerModule("dropout", new Dropout(cfg.dropout()));
        }

        /** {@code ids} {@code [B, T]}, or {@code embeds} {@code [B, T, dim]} when ids are null. */
        public NDArray forward(NDArray ids, NDArray embeds) {
            NDArray x = ids != null ? call("word_embeddings", ids) : embeds;
            long seq = x.getShape().get(1);
            if (seq > maxPositions) {
                throw new IllegalArgumentException("sequence length " + seq + " exceeds max_position_embeddings "
                        + maxPositions);
            }
            NDArray positions = x.getManager().arange(0, seq).toType(DataType.INT64, false).reshape(1, seq);
            x = x.add(call("position_embeddings", positions));
            return call("dropout", call("LayerNorm", x));
        }
    }

    /** {@code layer.0 .. layer.N-1}. */
    public static class Transformer extends Module {
        public Transformer(NDManager manager, DistilBertConfig cfg) {
            ModuleList layers = registerModule("layer", new ModuleList());
            for (int i = 0; i < cfg.nLayers(); i++) {
                layers.add(new TransformerBlock(manager, cfg));
            }
        }

        /** Runs every block; {@code hiddenStates}, when not null, receives the input and each block's output. */
        public NDArray forward(NDArray x, NDArray mask, List<NDArray> hiddenStates) {
            ModuleList layers = (ModuleList) child("layer");
            if (hiddenStates != null) {
                hiddenStates.add(x);
            }
            for (int i = 0; i < layers.size(); i++) {
                x = ((TransformerBlock) layers.get(i)).forward(x, mask);
                if (hiddenStates != null) {
                    hiddenStates.add(x);
                }
            }
            return x;
        }
    }

    /** Post-norm block: {@code sa_layer_norm(attention(x) + x)}, then {@code output_layer_norm(ffn(h) + h)}. */
    public static class TransformerBlock extends Module {
        public TransformerBlock(NDManager manager, DistilBertConfig cfg) {
            registerModule("attention", new MultiHeadSelfAttention(manager, cfg));
            registerModule("sa_layer_norm", new LayerNorm(manager, cfg.dim(), DistilBertConfig.LAYER_NORM_EPS));
            registerModule("ffn", new FFN(manager, cfg));
            registerModule("output_layer_norm", new LayerNorm(manager, cfg.dim(), DistilBertConfig.LAYER_NORM_EPS));
        }

        public NDArray forward(NDArray x, NDArray mask) {
            NDArray sa = ((MultiHeadSelfAttention) child("attention")).forward(x, mask);
            NDArray h = call("sa_layer_norm", sa.add(x));
            return call("output_layer_norm", call("ffn", h).add(h));
        }
    }

    /** Bidirectional multi-head attention with its output projection {@code out_lin}. */
    public static class MultiHeadSelfAttention extends Module {
        private final int numHeads;
        private final int headDim;

        public MultiHeadSelfAttention(NDManager manager, DistilBertConfig cfg) {
            this.numHeads = cfg.nHeads();
            this.headDim = cfg.headDim();
            long d = cfg.dim();
            registerModule("dropout", new Dropout(cfg.attentionDropout()));
            registerModule("q_lin", new Linear(manager, d, d, true));
            registerModule("k_lin", new Linear(manager, d, d, true));
            registerModule("v_lin", new Linear(manager, d, d, true));
            registerModule("out_lin", new Linear(manager, d, d, true));
        }

        /** @param mask additive {@code [B, 1, 1, T]} or null */
        public NDArray forward(NDArray x, NDArray mask) {
            long b = x.getShape().get(0);
            long t = x.getShape().get(1);
            // transformers scales q by 1/sqrt(head_dim) before the product, as here.
            NDArray q = F.mul(heads(call("q_lin", x), b, t), (float) (1.0 / Math.sqrt(headDim)));
            NDArray k = heads(call("k_lin", x), b, t);
            NDArray v = heads(call("v_lin", x), b, t);
            NDArray scores = q.matMul(k.transpose(0, 1, 3, 2));
            if (mask != null) {
                scores = scores.add(mask);
            }
            NDArray probs = call("dropout", scores.softmax(-1));
            NDArray ctx = probs.matMul(v).transpose(0, 2, 1, 3).reshape(b, t, (long) numHeads * headDim);
            return call("out_lin", ctx);
        }

        /** {@code [B, T, dim]} to {@code [B, heads, T, head_dim]}. */
        private NDArray heads(NDArray x, long b, long t) {
            return x.reshape(b, t, numHeads, headDim).transpose(0, 2, 1, 3);
        }
    }

    /** {@code dropout(lin2(act(lin1(x))))}. */
    public static class FFN extends Module {
        private final io.peft4j.transformers.bert.BertConfig.Activation act;

        public FFN(NDManager manager, DistilBertConfig cfg) {
            this.act = cfg.activation();
            registerModule("dropout", new Dropout(cfg.dropout()));
            registerModule("lin1", new Linear(manager, cfg.dim(), cfg.hiddenDim(), true));
            registerModule("lin2", new Linear(manager, cfg.hiddenDim(), cfg.dim(), true));
        }

        @Override
        public NDArray forward(NDArray x) {
            return call("dropout", call("lin2", act.apply(call("lin1", x))));
        }
    }

    @Override
    public void initMissingWeights(java.util.List<String> names) {
        BertModel.initNewlyInitialized(this, names, manager(), cfg.initializerRange());
    }

}
