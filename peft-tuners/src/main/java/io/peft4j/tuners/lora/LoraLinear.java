package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.InitLoraWeights;
import io.peft4j.config.LoraGAConfig;
import io.peft4j.nn.F;
import io.peft4j.nn.Identity;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.quant.Linear4bit;
import io.peft4j.tuners.TunerLayer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * LoRA around a {@link Linear} or GPT-2 {@link Conv1D}: {@code y = base(x) + B(A(dropout(x))) * scaling} per
 * active adapter, with {@code A: (r, in)} and {@code B: (out, r)} stored as bias-free Linear layers.
 */
public final class LoraLinear extends LoraLayer {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(LoraLinear.class);
    private final long inFeatures;
    private final long outFeatures;
    private final boolean fanInFanOut;
    private final Map<String, Boolean> loraBias = new HashMap<>();
    private final Map<String, Boolean> useDora = new HashMap<>();

    /**
     * @param fanInFanOut true when the base weight is stored {@code (in, out)} (GPT-2 Conv1D)
     */
    public LoraLinear(Module baseLayer, boolean fanInFanOut) {
        super(baseLayer);
        long[] features = linearFeatures(baseLayer, fanInFanOut);
        this.fanInFanOut = fanInFanOut;
        this.inFeatures = features[0];
        this.outFeatures = features[1];
        registerModule("lora_dropout", new ModuleDict());
        registerModule("lora_A", new ModuleDict());
        registerModule("lora_B", new ModuleDict());
    }

    /** True if LoRA can wrap this module (a Linear, a GPT-2 Conv1D or a 4-bit {@link Linear4bit}). */
    public static boolean supports(Module m) {
        return m instanceof Linear || m instanceof Conv1D || m instanceof Linear4bit;
    }

    /** The 4-bit base layer (QLoRA), or null when the base weight is float. */
    private Linear4bit quantizedBase() {
        return baseLayer() instanceof Linear4bit q ? q : null;
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    public boolean fanInFanOut() {
        // follows the base layer when it is swapped (a 4-bit GPT-2 Conv1D dequantised back to a Conv1D)
        Module base = baseLayer();
        return base instanceof Conv1D || (fanInFanOut && !(base instanceof Linear4bit));
    }

    private ModuleDict dict(String name) {
        return (ModuleDict) child(name);
    }

    /** Adds (or replaces) an adapter on this layer and initialises it. */
    public void updateLayer(String adapter, int r, double alpha, double dropout, InitLoraWeights init,
                            boolean useRslora, boolean withLoraBias) {
        updateLayer(adapter, r, alpha, dropout, init, useRslora, withLoraBias, false);
    }

    /**
     * Same, optionally with DoRA: the magnitude vector starts as the row norm of {@code W + s·BA}, so the
     * adapted layer initially computes what the base layer does.
     */
    public void updateLayer(String adapter, int r, double alpha, double dropout, InitLoraWeights init,
                            boolean useRslora, boolean withLoraBias, boolean dora) {
        if (dora && withLoraBias) {
            throw new IllegalArgumentException("DoRA does not support lora_bias=True (module " + adapter + ")");
        }
        if (r <= 0) {
            throw new IllegalArgumentException("`r` should be a positive integer value but the value passed is " + r);
        }
        NDManager m = baseLayer().param("weight").data().getManager();
        dict("lora_dropout").put(adapter, dropout > 0 ? new Dropout(dropout) : new Identity());
        Linear a = dict("lora_A").put(adapter, new Linear(m, inFeatures, r, false));
        Linear b = dict("lora_B").put(adapter, new Linear(m, r, outFeatures, withLoraBias));
        ranks.put(adapter, r);
        loraBias.put(adapter, withLoraBias);
        scaling.put(adapter, useRslora ? alpha / Math.sqrt(r) : alpha / r);
        resetParameters(adapter, init, a, b, m);
        useDora.put(adapter, dora);
        if (dora) {
            if (!hasChild("lora_magnitude_vector")) {
                registerModule("lora_magnitude_vector", new ModuleDict());
            }
            dict("lora_magnitude_vector").put(adapter, new DoraLinearLayer(doraNorm(adapter)));
        }
    }

    /**
     * The base weight as {@code (out, in)} (GPT-2's Conv1D stores it transposed; a 4-bit weight is dequantised into
     * a temporary of the current scope).
     */
    private NDArray weightOutIn() {
        Linear4bit q = quantizedBase();
        if (q != null) {
            return q.dequantize();
        }
        NDArray w = baseLayer().param("weight").data();
        return fanInFanOut() ? w.transpose() : w;
    }

    public boolean usesDora(String adapter) {
        return useDora.getOrDefault(adapter, false);
    }

    private void resetParameters(String adapter, InitLoraWeights init, Linear a, Linear b, NDManager m) {
        if (init == null || init.isFalse()) {
            return;
        }
        if (init.isString() && (init.name().equals("pissa") || init.name().startsWith("pissa_niter_")
                || init.name().equals("olora"))) {
            factorInit(adapter, init.name(), a, b, m);
            return;
        }
        // lora_ga: the default init, replaced by LoraGA.initialize when gradient estimates exist (peft's fallback)
        if (init.isString() && "gaussian".equals(init.name())) {
            int r = ranks.get(adapter);
            a.weight().setData(m.randomNormal(0f, 1f / r, a.weight().shape(), DataType.FLOAT32));
        } else if (init.isString() && !"lora_ga".equals(init.name())) {
            throw new UnsupportedOperationException("init_lora_weights=\"" + init.name()
                    + "\" is not supported yet by peft4j (supported: true, false, \"gaussian\", \"pissa\", \"pissa_niter_N\", "
                    + "\"olora\", \"lora_ga\")");
        }
        // true: A keeps nn.Linear's kaiming-uniform(a=sqrt(5)) init, which is U(-1/sqrt(in), 1/sqrt(in)).
        b.weight().setData(m.zeros(b.weight().shape()));
        if (b.bias() != null) {
            b.bias().setData(m.zeros(b.bias().shape()));
        }
    }

    /**
     * PiSSA / OLoRA: factor the base weight, give the adapter the principal part and leave the residual in the base
     * layer (the layer's output is unchanged). GPT-2's Conv1D weight is factored as {@code (out, in)} too.
     */
    private void factorInit(String adapter, String kind, Linear a, Linear b, NDManager m) {
        requireFloatBase("init_lora_weights=\"" + kind + "\"");
        int r = ranks.get(adapter);
        double s = scaling.get(adapter);
        float[] data = weightOutIn().toFloatArray();
        int out = (int) outFeatures;
        int in = (int) inFeatures;
        setFactors(a, b, m, kind.equals("olora") ? LoraInit.olora(data, out, in, r, s)
                : LoraInit.pissa(data, out, in, r, s));
    }

    /**
     * LoRA-GA: A and B from the leading singular vectors {@code u (out, k)}, {@code vt (k, in)} of the base weight's
     * estimated gradient; the base weight keeps {@code W − s·B·A}.
     */
    void loraGaInit(String adapter, LoraGAConfig cfg, float[] u, float[] vt, int k) {
        requireFloatBase("init_lora_weights=\"lora_ga\"");
        NDManager m = baseLayer().param("weight").data().getManager();
        java.util.Random random = null;
        if (cfg.direction().equals("random")) {
            try (NDArray seed = m.randomInteger(0, Integer.MAX_VALUE, new Shape(1), DataType.INT32)) {
                random = new java.util.Random(seed.toIntArray()[0]); // follows Torch.manualSeed
            }
        }
        float[][] f = LoraInit.loraGa(weightOutIn().toFloatArray(), (int) outFeatures, (int) inFeatures,
                ranks.get(adapter), scaling.get(adapter), u, vt, k, cfg, random);
        setFactors((Linear) dict("lora_A").get(adapter), (Linear) dict("lora_B").get(adapter), m, f);
    }

    /** Installs {@code {A, B, residual}}: the adapter's factors and the base weight that keeps the output unchanged. */
    private void setFactors(Linear a, Linear b, NDManager m, float[][] f) {
        int out = (int) outFeatures;
        int in = (int) inFeatures;
        int r = (int) a.weight().shape().get(0);
        a.weight().setData(LoraInit.array(m, f[0], r, in));
        b.weight().setData(LoraInit.array(m, f[1], out, r));
        float[] res = f[2];
        if (fanInFanOut()) {
            res = new float[res.length];
            for (int o = 0; o < out; o++) {
                for (int i = 0; i < in; i++) {
                    res[i * out + o] = f[2][o * in + i];
                }
            }
        }
        baseLayer().param("weight").setData(fanInFanOut() ? LoraInit.array(m, res, in, out) : LoraInit.array(m, res, out, in));
    }

    /** PiSSA/OLoRA/LoRA-GA rewrite the base weight: refused on a 4-bit base, which cannot hold the residual exactly. */
    private void requireFloatBase(String what) {
        if (quantizedBase() != null) {
            throw new UnsupportedOperationException(what + " rewrites the base weight and is not supported on a 4-bit "
                    + "(QLoRA) base layer; initialise on the full-precision model, or use the default init");
        }
    }

    /**
     * On a 4-bit base (QLoRA) merging dequantises, adds {@code ΔW} in float32 and re-quantises: lossy, as in peft's
     * bnb layers (a warning says so); unmerging the same way is lossy too. For an exact merge, dequantise the base
     * first ({@code Quantization.dequantize(model)}) or merge into a full-precision copy of the base model.
     */
    @Override
    public void merge(boolean safe, List<String> adapterNames) {
        Linear4bit q = quantizedBase();
        if (q == null) {
            super.merge(safe, adapterNames);
            return;
        }
        List<String> names = adapterNames == null ? new ArrayList<>(activeAdapters()) : adapterNames;
        for (String adapter : names) {
            if (!hasAdapter(adapter) || mergedAdapters.contains(adapter)) {
                continue;
            }
            LOG.warn("Merge lora module to 4-bit linear may get different generations due to rounding errors.");
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray merged = mergedWeight(adapter, q.dequantize());
                if (safe && !F.allFinite(merged)) {
                    throw new IllegalStateException("NaNs detected in the merged weights. The adapter '" + adapter
                            + "' seems to be broken");
                }
                NDArray db = deltaBias(adapter);
                if (db != null && q.bias() != null) {
                    q.bias().setData(q.bias().data().add(db));
                }
                q.requantize(merged);
            }
            mergedAdapters.add(adapter);
        }
    }

    @Override
    public void validateMerge(List<String> adapterNames) {
        Linear4bit q = quantizedBase();
        if (q == null) {
            super.validateMerge(adapterNames);
            return;
        }
        List<String> names = adapterNames == null ? new ArrayList<>(activeAdapters()) : adapterNames;
        for (String adapter : names) {
            if (!hasAdapter(adapter) || mergedAdapters.contains(adapter)) {
                continue;
            }
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                if (!F.allFinite(mergedWeight(adapter, q.dequantize()))) {
                    throw new IllegalStateException("NaNs detected in the merged weights. The adapter '" + adapter
                            + "' seems to be broken");
                }
            }
        }
    }

    @Override
    public void unmerge() {
        Linear4bit q = quantizedBase();
        if (q == null) {
            super.unmerge();
            return;
        }
        while (!mergedAdapters.isEmpty()) {
            String adapter = mergedAdapters.remove(mergedAdapters.size() - 1);
            LOG.warn("Unmerge lora module to 4-bit linear may get different generations due to rounding errors.");
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray db = deltaBias(adapter);
                if (db != null && q.bias() != null) {
                    q.bias().setData(q.bias().data().sub(db));
                }
                q.requantize(unmergedWeight(adapter, q.dequantize()));
            }
        }
    }

    @Override
    public NDArray forward(NDArray x) {
        boolean bypass = bypassAdapters();
        NDArray result = baseLayer().forward(x);
        if (bypass) {
            return result;
        }
        ModuleDict as = dict("lora_A");
        List<String> rows = io.peft4j.tuners.MixedBatch.current();
        // A mixed batch runs every adapter named in it, each masked to its own rows.
        List<String> adapters = rows == null ? activeAdapters() : rows.stream().distinct().toList();
        for (String adapter : adapters) {
            Module a = as.get(adapter);
            if (a == null) {
                continue;
            }
            float s = scaling.get(adapter).floatValue();
            Module dropout = dict("lora_dropout").get(adapter);
            if (usesDora(adapter)) {
                result = doraForward(adapter, x, result, dropout, s);
                continue;
            }
            NDArray h = a.forward(dropout.forward(x));
            Module b = dict("lora_B").get(adapter);
            // Scaling the rank-r activations instead of the output is the same product, r/out times cheaper.
            NDArray delta = loraBias.get(adapter) ? F.mul(b.forward(h), s) : b.forward(F.mul(h, s));
            if (rows != null) {
                delta = delta.mul(io.peft4j.tuners.MixedBatch.rowMask(x.getManager(), adapter,
                        delta.getShape().dimension()));
            }
            result = result.add(delta);
        }
        return result;
    }

    /**
     * DoRA: {@code y = result + (f - 1)·(W x) + f·s·B(A(x))} with {@code f = m / ‖W + s·BA‖} (norm detached), i.e.
     * {@code b + f ⊙ (W x + s·BAx)}. Without active dropout {@code W x} is the base output minus its bias; with
     * it, {@code W x} is recomputed on the dropped input, as peft does.
     */
    private NDArray doraForward(String adapter, NDArray x, NDArray result, Module dropout, float s) {
        Linear a = (Linear) dict("lora_A").get(adapter);
        Linear b = (Linear) dict("lora_B").get(adapter);
        NDArray xd = dropout.forward(x);
        NDArray loraResult = b.forward(a.forward(xd));
        NDArray norm = doraNorm(adapter);
        NDArray f = ((DoraLinearLayer) dict("lora_magnitude_vector").get(adapter)).magnitude().data().div(norm);
        NDArray baseOut;
        if (xd == x) {
            Param bias = baseLayer().paramOrNull("bias");
            baseOut = bias == null ? result : result.sub(bias.data());
        } else {
            baseOut = F.linear(xd, weightOutIn(), null);
        }
        return result.add(F.add(f, -1f).mul(baseOut)).add(f.mul(F.mul(loraResult, s)));
    }

    @Override
    protected NDArray mergedWeight(String adapter, NDArray weight) {
        if (!usesDora(adapter)) {
            return super.mergedWeight(adapter, weight);
        }
        // W' = (m / ‖W + ΔW‖) ⊙ (W + ΔW) row-wise; the norm is cached to undo the merge exactly.
        NDArray norm = doraNorm(adapter);
        NDScope.unregister(norm);
        NDArray old = mergeNorms.put(adapter, norm);
        if (old != null) {
            old.close();
        }
        return weight.add(deltaWeight(adapter)).mul(doraFactor(adapter, norm));
    }

    @Override
    protected NDArray unmergedWeight(String adapter, NDArray weight) {
        if (!usesDora(adapter)) {
            return super.unmergedWeight(adapter, weight);
        }
        NDArray norm = mergeNorms.remove(adapter);
        NDArray out = weight.div(doraFactor(adapter, norm)).sub(deltaWeight(adapter));
        norm.close();
        return out;
    }

    /** The detached row norm {@code ‖W + s·BA‖} DoRA divides by, from the adapter's current A and B. */
    private NDArray doraNorm(String adapter) {
        try (NoGrad ignored = NoGrad.enter()) {
            NDArray ba = loraB(adapter).data().matMul(loraA(adapter).data());
            return DoraLinearLayer.weightNorm(weightOutIn(), ba, scaling.get(adapter).floatValue());
        }
    }

    /** {@code m / norm} shaped to scale the base weight's output rows ({@code (out, 1)}, or {@code (1, out)} for Conv1D). */
    private NDArray doraFactor(String adapter, NDArray norm) {
        NDArray f = ((DoraLinearLayer) dict("lora_magnitude_vector").get(adapter)).magnitude().data().div(norm);
        return fanInFanOut() ? f.reshape(1, -1) : f.reshape(-1, 1);
    }

    private final Map<String, NDArray> mergeNorms = new HashMap<>();

    /** {@code transpose(B @ A, fan_in_fan_out) * scaling}, shaped like the base weight. */
    @Override
    public NDArray deltaWeight(String adapter) {
        NDArray a = ((Linear) dict("lora_A").get(adapter)).weight().data();
        NDArray b = ((Linear) dict("lora_B").get(adapter)).weight().data();
        NDArray ba = b.matMul(a);
        if (fanInFanOut()) {
            ba = ba.transpose();
        }
        return ba.mul(scaling.get(adapter).floatValue());
    }

    @Override
    public Param loraA(String adapter) {
        return ((Linear) dict("lora_A").get(adapter)).weight();
    }

    @Override
    public Param loraB(String adapter) {
        return ((Linear) dict("lora_B").get(adapter)).weight();
    }

    @Override
    protected boolean hasAdapter(String adapter) {
        return dict("lora_A").containsKey(adapter);
    }

    @Override
    protected NDArray deltaBias(String adapter) {
        Linear b = (Linear) dict("lora_B").get(adapter);
        return loraBias.get(adapter) ? b.bias().data().mul(scaling.get(adapter).floatValue()) : null;
    }

    @Override
    protected void onAdapterDeleted(String adapter) {
        super.onAdapterDeleted(adapter);
        loraBias.remove(adapter);
        useDora.remove(adapter);
    }
}
