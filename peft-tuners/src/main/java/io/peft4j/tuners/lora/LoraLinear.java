package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.InitLoraWeights;
import io.peft4j.nn.F;
import io.peft4j.nn.Identity;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Linear;
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
    private final long inFeatures;
    private final long outFeatures;
    private final boolean fanInFanOut;
    private final Map<String, Boolean> loraBias = new HashMap<>();

    /**
     * @param fanInFanOut true when the base weight is stored {@code (in, out)} (GPT-2 Conv1D)
     */
    public LoraLinear(Module baseLayer, boolean fanInFanOut) {
        super(baseLayer);
        Param w = baseLayer.param("weight");
        Shape s = w.shape();
        this.fanInFanOut = fanInFanOut;
        this.inFeatures = fanInFanOut ? s.get(0) : s.get(1);
        this.outFeatures = fanInFanOut ? s.get(1) : s.get(0);
        registerModule("lora_dropout", new ModuleDict());
        registerModule("lora_A", new ModuleDict());
        registerModule("lora_B", new ModuleDict());
    }

    /** True if LoRA can wrap this module (a Linear or a GPT-2 Conv1D). */
    public static boolean supports(Module m) {
        return m instanceof Linear || m instanceof Conv1D;
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    private ModuleDict dict(String name) {
        return (ModuleDict) child(name);
    }

    /** Adds (or replaces) an adapter on this layer and initialises it. */
    public void updateLayer(String adapter, int r, double alpha, double dropout, InitLoraWeights init,
                            boolean useRslora, boolean withLoraBias) {
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
    }

    private void resetParameters(String adapter, InitLoraWeights init, Linear a, Linear b, NDManager m) {
        if (init == null || init.isFalse()) {
            return;
        }
        if (init.isString() && "gaussian".equals(init.name())) {
            int r = ranks.get(adapter);
            a.weight().setData(m.randomNormal(0f, 1f / r, a.weight().shape(), DataType.FLOAT32));
        } else if (init.isString()) {
            throw new UnsupportedOperationException("init_lora_weights=\"" + init.name()
                    + "\" is not supported yet by peft4j (supported: true, false, \"gaussian\")");
        }
        // true: A keeps nn.Linear's kaiming-uniform(a=sqrt(5)) init, which is U(-1/sqrt(in), 1/sqrt(in)).
        b.weight().setData(m.zeros(b.weight().shape()));
        if (b.bias() != null) {
            b.bias().setData(m.zeros(b.bias().shape()));
        }
    }

    @Override
    public NDArray forward(NDArray x) {
        if (adaptersDisabled()) {
            if (merged()) {
                unmerge();
            }
            return baseLayer().forward(x);
        }
        NDArray result = baseLayer().forward(x);
        if (merged()) {
            return result;
        }
        ModuleDict as = dict("lora_A");
        for (String adapter : activeAdapters()) {
            Module a = as.get(adapter);
            if (a == null) {
                continue;
            }
            float s = scaling.get(adapter).floatValue();
            NDArray h = a.forward(dict("lora_dropout").get(adapter).forward(x));
            Module b = dict("lora_B").get(adapter);
            // Scaling the rank-r activations instead of the output is the same product, r/out times cheaper.
            NDArray delta = loraBias.get(adapter) ? F.mul(b.forward(h), s) : b.forward(F.mul(h, s));
            result = result.add(delta);
        }
        return result;
    }

    /** {@code transpose(B @ A, fan_in_fan_out) * scaling}, shaped like the base weight. */
    @Override
    public NDArray deltaWeight(String adapter) {
        NDArray a = ((Linear) dict("lora_A").get(adapter)).weight().data();
        NDArray b = ((Linear) dict("lora_B").get(adapter)).weight().data();
        NDArray ba = b.matMul(a);
        if (fanInFanOut) {
            ba = ba.transpose();
        }
        return ba.mul(scaling.get(adapter).floatValue());
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
    }
}
