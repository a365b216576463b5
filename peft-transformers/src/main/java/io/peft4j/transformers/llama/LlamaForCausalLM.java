package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleList;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.layers.RMSNorm;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.CausalLm;
import io.peft4j.transformers.Checkpoints;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * LLaMA-family decoder (LLaMA, Mistral, Qwen2) with a language-model head, numerically following
 * transformers 4.45's {@code LlamaForCausalLM}: RMSNorm, rotary position embeddings, grouped-query attention
 * and a SiLU-gated MLP. Module and parameter paths are transformers' names, so checkpoints load by name and
 * PEFT can find {@code q_proj}, {@code v_proj}, ... by path.
 *
 * <p>Every parent calls its children through {@link Module#child(String)} at call time: a child replaced by
 * an adapter wrapper is honoured. Call {@link #forward(ModelInput)} inside an {@code NDScope}.
 */
public class LlamaForCausalLM extends PreTrainedModel {

    private final LlamaConfig cfg;

    /** A randomly initialised model (transformers' init: N(0, initializer_range) linears and embeddings). */
    public LlamaForCausalLM(NDManager manager, LlamaConfig config) {
        super(manager, config.modelConfig());
        this.cfg = config;
        LlamaModel model = registerModule("model", new LlamaModel(manager, config));
        Linear lmHead = registerModule("lm_head", new Linear(manager, config.hiddenSize(), config.vocabSize(), false));
        initWeights(this, manager, config.initializerRange());
        if (config.tieWordEmbeddings()) {
            // Same Param object under both names: one tensor, counted once, updated together.
            Param own = lmHead.param("weight");
            lmHead.setParam("weight", model.child("embed_tokens").param("weight"));
            own.data().close();
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights of a transformers model directory. Every
     * checkpoint tensor must match a parameter by name and shape (the error names the keys); F16/BF16 are
     * widened to F32. The returned model is in eval mode and owns a new manager: close it.
     */
    public static LlamaForCausalLM fromPretrained(Path dir) throws IOException {
        return Checkpoints.fromPretrained(dir, LlamaConfig::of, LlamaForCausalLM::new, LlamaForCausalLM::loadWeights);
    }

    /** Loads a safetensors checkpoint (a file, or a directory with one file or a sharded index) by name. */
    public void loadWeights(Path dirOrFile) throws IOException {
        Set<String> optional = cfg.tieWordEmbeddings() ? Set.of("lm_head.weight") : Set.of();
        Checkpoints.loadSafetensors(this, dirOrFile, manager(),
                name -> name.endsWith("rotary_emb.inv_freq") || (isTied() && name.equals("lm_head.weight")),
                optional);
    }

    public LlamaConfig llamaConfig() {
        return cfg;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("model.embed_tokens");
    }

    @Override
    public String outputEmbeddingsPath() {
        return "lm_head";
    }

    @Override
    public ModelOutput forward(ModelInput input) {
        LlamaModel model = (LlamaModel) child("model");
        LlamaModel.Output out = model.forward(input);
        NDArray logits = call("lm_head", out.lastHidden());
        NDArray loss = null;
        if (input.labels() != null) {
            loss = CausalLm.loss(logits, input.labels());
        }
        return new ModelOutput(logits, loss, out.hiddenStates(), out.presentKeyValues());
    }


    @Override
    public void initMissingWeights(List<String> names) {
        for (String owner : Checkpoints.owners(names)) {
            initWeights(getSubmodule(owner), manager(), cfg.initializerRange());
        }
    }

    /** transformers' {@code LlamaPreTrainedModel._init_weights} below {@code root}; deferred weights are left alone. */
    private static void initWeights(Module root, NDManager manager, double std) {
        for (Module m : root.namedModules().values()) {
            if (m instanceof Linear || m instanceof Embedding) {
                Param w = m.param("weight");
                if (Init.isDeferred(w.data())) {
                    continue;
                }
                w.setData(manager.randomNormal(0f, (float) std, w.shape(), DataType.FLOAT32));
                Param b = m.paramOrNull("bias");
                if (b != null) {
                    b.setData(manager.zeros(b.shape()));
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------

    /** The decoder stack: {@code embed_tokens}, {@code layers}, {@code norm}, {@code rotary_emb}. */
    public static class LlamaModel extends Module {
        private final LlamaConfig cfg;

        /** Hidden state after the final norm, optional hidden-state list and the new key/value cache. */
        public record Output(NDArray lastHidden, List<NDArray> hiddenStates, List<NDArray[]> presentKeyValues) {}

        public LlamaModel(NDManager manager, LlamaConfig cfg) {
            this.cfg = cfg;
            registerModule("embed_tokens", new Embedding(manager, cfg.vocabSize(), cfg.hiddenSize()));
            ModuleList layers = registerModule("layers", new ModuleList());
            for (int i = 0; i < cfg.numHiddenLayers(); i++) {
                layers.add(new LlamaDecoderLayer(manager, cfg, i));
            }
            registerModule("norm", new RMSNorm(manager, cfg.hiddenSize(), cfg.rmsNormEps()));
            registerModule("rotary_emb", new LlamaRotaryEmbedding(manager, cfg));
        }

        public Output forward(ModelInput input) {
            NDArray hidden = input.inputIds() != null
                    ? call("embed_tokens", input.inputIds())
                    : input.inputsEmbeds();
            NDManager nd = hidden.getManager();
            long batch = hidden.getShape().get(0);
            long seq = hidden.getShape().get(1);
            List<NDArray[]> past = input.pastKeyValues();
            ModuleList layers = (ModuleList) child("layers");
            if (past != null && past.size() != layers.size()) {
                throw new IllegalArgumentException("past_key_values has " + past.size() + " layers, model has "
                        + layers.size());
            }
            long pastLen = past == null || past.isEmpty() ? 0 : past.get(0)[0].getShape().get(2);
            long total = pastLen + seq;
            if (cfg.slidingWindow() != null && total > cfg.slidingWindow()) {
                throw new UnsupportedOperationException("sequence length " + total + " exceeds sliding_window "
                        + cfg.slidingWindow() + "; sliding-window attention is not supported yet");
            }

            NDArray positions = input.positionIds() != null
                    ? input.positionIds()
                    : nd.arange(pastLen, total).toType(DataType.INT64, false).reshape(1, seq);
            LlamaRotaryEmbedding rotary = (LlamaRotaryEmbedding) child("rotary_emb");
            Rope rope = rotary.rope(positions, (float) (1.0 / Math.sqrt(cfg.headDim())));
            NDArray mask = CausalLm.attentionMask(nd, input.attentionMask(), batch, seq, pastLen);

            List<NDArray> hiddenStates = input.outputHiddenStates() ? new ArrayList<>() : null;
            List<NDArray[]> present = new ArrayList<>(layers.size());
            for (int i = 0; i < layers.size(); i++) {
                if (hiddenStates != null) {
                    hiddenStates.add(hidden);
                }
                LlamaDecoderLayer layer = (LlamaDecoderLayer) layers.get(i);
                NDArray[] kv = new NDArray[2];
                hidden = layer.forward(hidden, rope, mask, past == null ? null : past.get(i), kv);
                present.add(kv);
            }
            hidden = call("norm", hidden);
            if (hiddenStates != null) {
                // transformers' convention: the last entry is the normed output, not the last layer's raw one.
                hiddenStates.add(hidden);
            }
            return new Output(hidden, hiddenStates, present);
        }

    }

    /** Pre-norm block: {@code x + attn(norm(x))}, then {@code x + mlp(norm(x))}. */
    public static class LlamaDecoderLayer extends Module {
        private final int layerIdx;

        public LlamaDecoderLayer(NDManager manager, LlamaConfig cfg, int layerIdx) {
            this.layerIdx = layerIdx;
            registerModule("self_attn", new LlamaAttention(manager, cfg));
            registerModule("mlp", new LlamaMLP(manager, cfg));
            registerModule("input_layernorm", new RMSNorm(manager, cfg.hiddenSize(), cfg.rmsNormEps()));
            registerModule("post_attention_layernorm", new RMSNorm(manager, cfg.hiddenSize(), cfg.rmsNormEps()));
        }

        public int layerIdx() {
            return layerIdx;
        }

        /**
         * @param past {@code {key, value}} cached for this layer or null
         * @param presentOut receives this layer's full {@code {key, value}} (past and new)
         */
        public NDArray forward(NDArray x, Rope rope, NDArray mask, NDArray[] past, NDArray[] presentOut) {
            LlamaAttention attn = (LlamaAttention) child("self_attn");
            NDArray h = x.add(attn.forward(call("input_layernorm", x), rope, mask, past, presentOut));
            return h.add(call("mlp", call("post_attention_layernorm", h)));
        }
    }

    /** Multi-head attention with rotary embeddings and grouped key/value heads. */
    public static class LlamaAttention extends Module {
        private final int numHeads;
        private final int numKvHeads;
        private final int headDim;

        public LlamaAttention(NDManager manager, LlamaConfig cfg) {
            this.numHeads = cfg.numAttentionHeads();
            this.numKvHeads = cfg.numKeyValueHeads();
            this.headDim = cfg.headDim();
            long h = cfg.hiddenSize();
            registerModule("q_proj", new Linear(manager, h, (long) numHeads * headDim, cfg.qkvBias()));
            registerModule("k_proj", new Linear(manager, h, (long) numKvHeads * headDim, cfg.qkvBias()));
            registerModule("v_proj", new Linear(manager, h, (long) numKvHeads * headDim, cfg.qkvBias()));
            registerModule("o_proj", new Linear(manager, (long) numHeads * headDim, h, cfg.outputProjBias()));
        }

        public NDArray forward(NDArray x, Rope rope, NDArray mask, NDArray[] past, NDArray[] presentOut) {
            long b = x.getShape().get(0);
            long t = x.getShape().get(1);
            // RoPE runs in the projections' own [B, T, heads, D] layout; the softmax scale rides on q's cos/sin.
            NDArray q = rope.apply(call("q_proj", x).reshape(b, t, numHeads, headDim), true).transpose(0, 2, 1, 3);
            NDArray k = rope.apply(call("k_proj", x).reshape(b, t, numKvHeads, headDim), false).transpose(0, 2, 1, 3);
            NDArray v = call("v_proj", x).reshape(b, t, numKvHeads, headDim).transpose(0, 2, 1, 3);
            if (past != null) {
                k = past[0].concat(k, 2);
                v = past[1].concat(v, 2);
            }
            if (presentOut != null) {
                presentOut[0] = k;
                presentOut[1] = v;
            }
            NDArray kr = repeatKv(k);
            NDArray vr = repeatKv(v);
            NDArray probs = q.matMul(kr.transpose(0, 1, 3, 2)).add(mask).softmax(-1);
            NDArray out = probs.matMul(vr).transpose(0, 2, 1, 3).reshape(b, t, (long) numHeads * headDim);
            return call("o_proj", out);
        }

        /** Query head h reads key/value head h / (heads / kv_heads), like transformers' {@code repeat_kv}. */
        private NDArray repeatKv(NDArray kv) {
            int rep = numHeads / numKvHeads;
            if (rep == 1) {
                return kv;
            }
            Shape s = kv.getShape();
            return kv.expandDims(2).broadcast(s.get(0), numKvHeads, rep, s.get(2), headDim)
                    .reshape(s.get(0), (long) numHeads, s.get(2), headDim);
        }
    }

    /** {@code down_proj(silu(gate_proj(x)) * up_proj(x))}. */
    public static class LlamaMLP extends Module {
        public LlamaMLP(NDManager manager, LlamaConfig cfg) {
            long h = cfg.hiddenSize();
            long i = cfg.intermediateSize();
            registerModule("gate_proj", new Linear(manager, h, i, cfg.mlpBias()));
            registerModule("up_proj", new Linear(manager, h, i, cfg.mlpBias()));
            registerModule("down_proj", new Linear(manager, i, h, cfg.mlpBias()));
        }

        @Override
        public NDArray forward(NDArray x) {
            return call("down_proj", F.silu(call("gate_proj", x)).mul(call("up_proj", x)));
        }
    }

    /**
     * cos and sign-folded sin factors, {@code [B or 1, T, 1, head_dim]}, for keys and (scaled) for queries.
     * transformers computes {@code x * cos + rotate_half(x) * sin} with {@code rotate_half(x) = cat(-x2, x1)};
     * here the halves are swapped by a flip and the minus sign lives in {@code sin}: the same numbers, but
     * no slices, whose backward allocates and fills full-size zero gradients.
     */
    public record Rope(NDArray cos, NDArray sin, NDArray cosQ, NDArray sinQ) {
        /** Rotates {@code x} of shape {@code [B, T, heads, head_dim]}. */
        NDArray apply(NDArray x, boolean query) {
            Shape s = x.getShape();
            long d = s.get(3);
            NDArray swapped = x.reshape(s.get(0), s.get(1), s.get(2), 2, d / 2).flip(3).reshape(s);
            return x.mul(query ? cosQ : cos).add(swapped.mul(query ? sinQ : sin));
        }
    }

    /**
     * RoPE frequencies. {@code inv_freq} is a non-persistent buffer (not in checkpoints); cos/sin are
     * recomputed per call from the position ids, which is cheap and leaves no cached tensors to manage.
     */
    public static class LlamaRotaryEmbedding extends Module {
        public LlamaRotaryEmbedding(NDManager manager, LlamaConfig cfg) {
            int dim = cfg.headDim();
            // In float32 on the engine, as transformers does: 1 / theta^(arange(0, dim, 2) / dim).
            NDArray exps = manager.arange(0, dim, 2).toType(DataType.FLOAT32, false).div((float) dim);
            NDArray base = manager.create((float) cfg.ropeTheta());
            NDArray powers = base.pow(exps);
            NDArray ones = manager.ones(powers.getShape());
            NDArray invFreq = ones.div(powers);
            for (NDArray tmp : new NDArray[] {exps, base, powers, ones}) {
                tmp.close();
            }
            if (cfg.llama3RopeScaling() != null) {
                NDArray scaled = manager.create(llama3InvFreq(invFreq.toFloatArray(), cfg.llama3RopeScaling()));
                invFreq.close();
                invFreq = scaled;
            }
            registerBuffer("inv_freq", invFreq, false);
        }

        /**
         * The rotation for these positions; {@code qScale} (the attention's 1/sqrt(head_dim)) is folded into
         * the query's factors.
         */
        public Rope rope(NDArray positionIds, float qScale) {
            NDArray invFreq = buffer("inv_freq").data();
            NDArray pos = positionIds.toType(DataType.FLOAT32, false).expandDims(-1);
            NDArray freqs = pos.mul(invFreq);
            NDArray emb = freqs.concat(freqs, -1).expandDims(2);
            long half = invFreq.getShape().get(0);
            NDManager nd = emb.getManager();
            NDArray sign = nd.full(new Shape(half), -1f).concat(nd.ones(new Shape(half)));
            NDArray cos = emb.cos();
            NDArray sin = emb.sin().mul(sign);
            NDArray scale = F.scalar(cos, qScale);
            return new Rope(cos, sin, cos.mul(scale), sin.mul(scale));
        }

        /** transformers' {@code _compute_llama3_parameters}, in float32 like the original. */
        static float[] llama3InvFreq(float[] invFreq, LlamaConfig.Llama3RopeScaling s) {
            float factor = (float) s.factor();
            float low = (float) s.lowFreqFactor();
            float high = (float) s.highFreqFactor();
            float oldCtx = s.originalMaxPositionEmbeddings();
            double lowFreqWavelen = oldCtx / s.lowFreqFactor();
            double highFreqWavelen = oldCtx / s.highFreqFactor();
            float[] out = new float[invFreq.length];
            for (int i = 0; i < invFreq.length; i++) {
                float f = invFreq[i];
                float wavelen = (float) (2 * Math.PI) / f;
                float llama = wavelen > lowFreqWavelen ? f / factor : f;
                if (!(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)) {
                    float smooth = (oldCtx / wavelen - low) / (high - low);
                    llama = (1 - smooth) * llama / factor + smooth * llama;
                }
                out[i] = llama;
            }
            return out;
        }
    }
}
