package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleList;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.LayerNorm;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import io.peft4j.transformers.CausalLm;
import io.peft4j.transformers.Checkpoints;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;
import java.util.regex.Pattern;

/**
 * The GPT-2 transformer, numerically following transformers 4.45's {@code GPT2Model} (eager attention):
 * token and learned position embeddings, pre-LayerNorm blocks of causal multi-head attention and a GELU MLP,
 * a final LayerNorm. Projections are GPT-2's {@link Conv1D} (weights stored {@code [in, out]}), so HF
 * checkpoints and adapters (peft's {@code fan_in_fan_out=True}) load by name.
 *
 * <p>Module paths below the heads' {@code transformer.}: {@code wte}, {@code wpe}, {@code drop},
 * {@code h.N.{ln_1, attn.{c_attn, c_proj, attn_dropout, resid_dropout}, ln_2, mlp.{c_fc, c_proj, dropout}}},
 * {@code ln_f}. Every parent calls its children through {@link Module#child(String)} at call time, so a child
 * replaced by an adapter wrapper is honoured. Call {@link #forward(ModelInput)} inside an {@code NDScope}.
 */
public class Gpt2Model extends Module {

    /** Causal-mask buffers of old checkpoints ({@code h.N.attn.bias}, {@code h.N.attn.masked_bias}): not weights. */
    private static final Pattern LEGACY_BUFFER = Pattern.compile("(^|.*\\.)h\\.\\d+\\.attn\\.(bias|masked_bias)");

    private final Gpt2Config cfg;

    /** Hidden state after {@code ln_f}, optional hidden-state list and the new key/value cache. */
    public record Output(NDArray lastHidden, List<NDArray> hiddenStates, List<NDArray[]> presentKeyValues) {}

    public Gpt2Model(NDManager manager, Gpt2Config cfg) {
        this.cfg = cfg;
        registerModule("wte", new Embedding(manager, cfg.vocabSize(), cfg.nEmbd()));
        registerModule("wpe", new Embedding(manager, cfg.nPositions(), cfg.nEmbd()));
        registerModule("drop", new Dropout(cfg.embdPdrop()));
        ModuleList h = registerModule("h", new ModuleList());
        for (int i = 0; i < cfg.nLayer(); i++) {
            h.add(new Gpt2Block(manager, cfg, i));
        }
        registerModule("ln_f", new LayerNorm(manager, cfg.nEmbd(), cfg.layerNormEpsilon()));
    }

    public Gpt2Config gpt2Config() {
        return cfg;
    }

    public Output forward(ModelInput input) {
        NDArray embeds = input.inputIds() != null ? call("wte", input.inputIds()) : input.inputsEmbeds();
        NDManager nd = embeds.getManager();
        long batch = embeds.getShape().get(0);
        long seq = embeds.getShape().get(1);
        List<NDArray[]> past = input.pastKeyValues();
        ModuleList blocks = (ModuleList) child("h");
        if (past != null && past.size() != blocks.size()) {
            throw new IllegalArgumentException("past_key_values has " + past.size() + " layers, model has "
                    + blocks.size());
        }
        long pastLen = past == null || past.isEmpty() ? 0 : past.get(0)[0].getShape().get(2);
        long total = pastLen + seq;

        // GPT2Model.forward: position_ids = arange(past, past + seq) unless given, even with a padded
        // attention_mask (only generate() derives them from the mask; see positionIdsFromAttentionMask).
        NDArray positions = input.positionIds();
        if (positions == null) {
            if (total > cfg.nPositions()) {
                throw new IllegalArgumentException("sequence length " + total + " (past " + pastLen + " + " + seq
                        + ") exceeds n_positions " + cfg.nPositions());
            }
            positions = nd.arange(pastLen, total).toType(DataType.INT64, false).reshape(1, seq);
        }
        NDArray hidden = call("drop", embeds.add(call("wpe", positions)));
        NDArray mask = CausalLm.attentionMask(nd, input.attentionMask(), batch, seq, pastLen);

        List<NDArray> hiddenStates = input.outputHiddenStates() ? new ArrayList<>() : null;
        List<NDArray[]> present = new ArrayList<>(blocks.size());
        for (int i = 0; i < blocks.size(); i++) {
            if (hiddenStates != null) {
                hiddenStates.add(hidden);
            }
            Gpt2Block block = (Gpt2Block) blocks.get(i);
            NDArray[] kv = new NDArray[2];
            hidden = block.forward(hidden, mask, past == null ? null : past.get(i), kv);
            present.add(kv);
        }
        hidden = call("ln_f", hidden);
        if (hiddenStates != null) {
            // transformers' convention: the last entry is after ln_f, not the last block's raw output.
            hiddenStates.add(hidden);
        }
        return new Output(hidden, hiddenStates, present);
    }

    /**
     * Position ids for a (left-)padded batch as {@code GPT2LMHeadModel.prepare_inputs_for_generation} builds
     * them: {@code cumsum(mask) - 1}, padding positions set to 1. {@code forward} itself uses
     * {@code arange} unless given these, exactly as transformers 4.45 does.
     *
     * @param attentionMask {@code [B, T]}, 1 for tokens, 0 for padding
     * @return {@code [B, T]} int64
     */
    public static NDArray positionIdsFromAttentionMask(NDArray attentionMask) {
        // Integer bookkeeping, never differentiated: scalar ops are safe here.
        NDArray keep = attentionMask.neq(0).toType(DataType.INT64, false);
        NDArray cum = keep.cumSum(1).toType(DataType.INT64, false);
        // keep ? cum - 1 : 1  ==  keep * (cum - 2) + 1
        return keep.mul(cum.sub(2)).add(1).toType(DataType.INT64, false);
    }


    /**
     * transformers' {@code GPT2PreTrainedModel._init_weights} over a whole model: linear, Conv1D and
     * embedding weights N(0, initializer_range), biases 0, LayerNorm 1/0, and the residual projections
     * ({@code c_proj.weight}) N(0, initializer_range / sqrt(2 * n_layer)).
     */
    static void initWeights(Module root, NDManager manager, Gpt2Config cfg) {
        initWeights(root, "", manager, cfg);
    }

    /** The modules owning {@code names} (what a checkpoint did not provide), initialised as above. */
    static void initMissing(Module model, List<String> names, NDManager manager, Gpt2Config cfg) {
        for (String owner : Checkpoints.owners(names)) {
            initWeights(model.getSubmodule(owner), owner, manager, cfg);
        }
    }

    /** @param rootPath {@code root}'s path in the model, so a lone {@code c_proj} still gets the residual std */
    private static void initWeights(Module root, String rootPath, NDManager manager, Gpt2Config cfg) {
        float std = (float) cfg.initializerRange();
        float projStd = (float) (cfg.initializerRange() / Math.sqrt(2.0 * Math.max(1, cfg.nLayer())));
        for (Map.Entry<String, Module> e : root.namedModules().entrySet()) {
            Module m = e.getValue();
            if (m instanceof Linear || m instanceof Conv1D || m instanceof Embedding) {
                String path = e.getKey().isEmpty() ? rootPath : rootPath.isEmpty() ? e.getKey() : rootPath + "." + e.getKey();
                boolean residualProj = m instanceof Conv1D && path.endsWith("c_proj");
                Param w = m.param("weight");
                if (Init.isDeferred(w.data())) {
                    continue;
                }
                w.setData(manager.randomNormal(0f, residualProj ? projStd : std, w.shape(), DataType.FLOAT32));
                Param b = m.paramOrNull("bias");
                if (b != null) {
                    b.setData(manager.zeros(b.shape()));
                }
            } else if (m instanceof LayerNorm) {
                m.param("weight").setData(manager.ones(m.param("weight").shape()));
                m.param("bias").setData(manager.zeros(m.param("bias").shape()));
            }
        }
    }

    /**
     * Loads a safetensors checkpoint into a model whose trunk sits at {@code transformer.}. Accepts both
     * layouts real GPT-2 checkpoints come in: with the {@code transformer.} prefix (a head model's
     * {@code save_pretrained}) and without (the original {@code gpt2} repo: {@code h.0.attn...},
     * {@code wte.weight}); like transformers, a bare key is given the prefix when the model has it there.
     * The legacy {@code attn.bias}/{@code attn.masked_bias} buffers are skipped. Names and shapes are
     * checked (by {@link Checkpoints}) before anything is loaded.
     *
     * @param ignore further checkpoint names to skip (e.g. another head's weights)
     * @param optional model entries the checkpoint may omit
     * @return the checkpoint's tensor names, as stored
     */
    static List<String> loadCheckpoint(Module model, Path dirOrFile, NDManager manager, Predicate<String> ignore,
                                       Set<String> optional) throws IOException {
        Set<String> own = model.namedStateEntries().keySet();
        List<String> names;
        try (ShardedSafetensors st = ShardedSafetensors.open(dirOrFile)) {
            names = List.copyOf(st.names());
        }
        boolean prefixed = names.stream().anyMatch(n -> n.startsWith("transformer."));
        Checkpoints.loadSafetensors(model, dirOrFile, manager,
                name -> LEGACY_BUFFER.matcher(name).matches() || ignore.test(name), optional,
                name -> !prefixed && own.contains("transformer." + name) ? "transformer." + name : name);
        return names;
    }

    // ---------------------------------------------------------------------------------------------------

    /** Pre-LayerNorm block: {@code x + attn(ln_1(x))}, then {@code x + mlp(ln_2(x))}. */
    public static class Gpt2Block extends Module {
        private final int layerIdx;

        public Gpt2Block(NDManager manager, Gpt2Config cfg, int layerIdx) {
            this.layerIdx = layerIdx;
            registerModule("ln_1", new LayerNorm(manager, cfg.nEmbd(), cfg.layerNormEpsilon()));
            registerModule("attn", new Gpt2Attention(manager, cfg, layerIdx));
            registerModule("ln_2", new LayerNorm(manager, cfg.nEmbd(), cfg.layerNormEpsilon()));
            registerModule("mlp", new Gpt2MLP(manager, cfg));
        }

        public int layerIdx() {
            return layerIdx;
        }

        /**
         * @param past {@code {key, value}} cached for this layer or null
         * @param presentOut receives this layer's full {@code {key, value}} (past and new)
         */
        public NDArray forward(NDArray x, NDArray mask, NDArray[] past, NDArray[] presentOut) {
            Gpt2Attention attn = (Gpt2Attention) child("attn");
            NDArray h = x.add(attn.forward(call("ln_1", x), mask, past, presentOut));
            return h.add(call("mlp", call("ln_2", h)));
        }
    }

    /** Causal multi-head self-attention with a fused {@code c_attn} (q, k, v) projection. */
    public static class Gpt2Attention extends Module {
        private final int numHeads;
        private final int headDim;
        private final long embed;
        /** 1/sqrt(head_dim) (scale_attn_weights) times 1/(layer+1) (scale_attn_by_inverse_layer_idx). */
        private final float scale;

        public Gpt2Attention(NDManager manager, Gpt2Config cfg, int layerIdx) {
            this.numHeads = cfg.nHead();
            this.headDim = cfg.headDim();
            this.embed = cfg.nEmbd();
            double s = cfg.scaleAttnWeights() ? 1.0 / Math.sqrt(headDim) : 1.0;
            if (cfg.scaleAttnByInverseLayerIdx()) {
                s /= layerIdx + 1;
            }
            this.scale = (float) s;
            registerModule("c_attn", new Conv1D(manager, embed, 3 * embed));
            registerModule("c_proj", new Conv1D(manager, embed, embed));
            registerModule("attn_dropout", new Dropout(cfg.attnPdrop()));
            registerModule("resid_dropout", new Dropout(cfg.residPdrop()));
        }

        public NDArray forward(NDArray x, NDArray mask, NDArray[] past, NDArray[] presentOut) {
            long b = x.getShape().get(0);
            long t = x.getShape().get(1);
            // split (not slicing) keeps the backward a plain concatenation of the three gradients.
            NDList qkv = call("c_attn", x).split(3, 2); // DJL split takes no negative axis
            NDArray q = heads(qkv.get(0), b, t);
            NDArray k = heads(qkv.get(1), b, t);
            NDArray v = heads(qkv.get(2), b, t);
            if (past != null) {
                k = past[0].concat(k, 2);
                v = past[1].concat(v, 2);
            }
            if (presentOut != null) {
                presentOut[0] = k;
                presentOut[1] = v;
            }
            // The score scale rides on q ([T, D] elements rather than [T, T]); same numbers to float rounding.
            NDArray qs = scale == 1f ? q : F.mul(q, scale);
            NDArray probs = qs.matMul(k.transpose(0, 1, 3, 2)).add(mask).softmax(-1);
            probs = call("attn_dropout", probs);
            NDArray out = probs.matMul(v).transpose(0, 2, 1, 3).reshape(b, t, embed);
            return call("resid_dropout", call("c_proj", out));
        }

        /** {@code [B, T, E]} to {@code [B, heads, T, head_dim]}. */
        private NDArray heads(NDArray x, long b, long t) {
            return x.reshape(b, t, numHeads, headDim).transpose(0, 2, 1, 3);
        }
    }

    /** {@code dropout(c_proj(act(c_fc(x))))}. */
    public static class Gpt2MLP extends Module {
        private final String activation;

        public Gpt2MLP(NDManager manager, Gpt2Config cfg) {
            this.activation = cfg.activationFunction();
            registerModule("c_fc", new Conv1D(manager, cfg.nEmbd(), cfg.nInner()));
            registerModule("c_proj", new Conv1D(manager, cfg.nInner(), cfg.nEmbd()));
            registerModule("dropout", new Dropout(cfg.residPdrop()));
        }

        @Override
        public NDArray forward(NDArray x) {
            NDArray h = call("c_fc", x);
            h = switch (activation) {
                // gelu_pytorch_tanh is torch's fused form of the same tanh approximation.
                case "gelu_new", "gelu_pytorch_tanh" -> F.geluTanh(h);
                case "gelu" -> F.gelu(h);
                case "relu" -> F.relu(h);
                default -> throw new IllegalStateException("activation_function '" + activation + "'");
            };
            return call("dropout", call("c_proj", h));
        }

        @Override
        public String extraRepr() {
            return "act=" + activation;
        }
    }
}
