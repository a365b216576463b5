package io.peft4j.tuners.adalora;

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
import io.peft4j.nn.Param;
import io.peft4j.nn.ParameterDict;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.tuners.MixedBatch;
import io.peft4j.tuners.lora.LoraLayer;
import io.peft4j.tuners.lora.LoraLinear;

import java.util.List;

/**
 * AdaLoRA's SVD-form adapter around a Linear or GPT-2 Conv1D (peft's {@code SVDLinear}): per adapter
 * {@code lora_A (r, in)}, {@code lora_E (r, 1)} and {@code lora_B (out, r)} in ParameterDicts, so they are saved as
 * {@code ...lora_A} without {@code .weight}, and a frozen, unsaved {@code ranknum} (the initial rank). Forward:
 * {@code y = base(x) + (dropout(x) (A⊙E)ᵀ Bᵀ) · scaling / (ranknum + 1e-5)}, {@code scaling = lora_alpha} (or
 * {@code r} when {@code lora_alpha <= 0}). Pruning zeroes entries of {@code E}; a saved pruned adapter is loaded
 * by {@link #resize} to fewer rows while {@code ranknum} keeps the initial rank, as peft does.
 */
public final class SVDLinear extends LoraLayer {
    private static final List<String> ADAPTER_LAYERS = List.of("lora_A", "lora_B", "lora_E");

    private final long inFeatures;
    private final long outFeatures;
    private final boolean fanInFanOut;

    /** @param fanInFanOut true when the base weight is stored {@code (in, out)} (GPT-2 Conv1D) */
    public SVDLinear(Module baseLayer, boolean fanInFanOut) {
        super(baseLayer);
        long[] features = linearFeatures(baseLayer, fanInFanOut);
        this.fanInFanOut = fanInFanOut;
        this.inFeatures = features[0];
        this.outFeatures = features[1];
        registerModule("lora_dropout", new ModuleDict());
        registerModule("lora_A", new ParameterDict());
        registerModule("lora_B", new ParameterDict());
        registerModule("lora_E", new ParameterDict());
        registerModule("ranknum", new ParameterDict());
    }

    /** True if AdaLoRA can wrap this module (a Linear or a GPT-2 Conv1D). */
    public static boolean supports(Module m) {
        return LoraLinear.supports(m);
    }

    /** {@code ranknum} is left out: it is neither trained nor saved. */
    @Override
    public List<String> adapterLayerNames() {
        return ADAPTER_LAYERS;
    }

    private ParameterDict dict(String name) {
        return (ParameterDict) child(name);
    }

    /**
     * Adds (or replaces) an adapter of rank {@code r} ({@code >= 0}; peft allows 0). With {@code init_lora_weights}
     * false every tensor stays N(0, 1) as peft draws it; otherwise {@code E = 0} and {@code A, B ~ N(0, 0.02²)}, so
     * the layer starts as its base layer.
     */
    public void updateLayer(String adapter, int r, double loraAlpha, double dropout, InitLoraWeights init) {
        if (r < 0) {
            throw new IllegalArgumentException("`r` should be a positive integer or 0, but the value passed is " + r);
        }
        NDManager m = baseLayer().param("weight").data().getManager();
        ModuleDict dropouts = (ModuleDict) child("lora_dropout");
        dropouts.put(adapter, dropout > 0 ? new Dropout(dropout) : new Identity());
        boolean reset = init == null || !init.isFalse();
        replace("lora_A", adapter, reset ? m.randomNormal(0f, 0.02f, new Shape(r, inFeatures), DataType.FLOAT32)
                : m.randomNormal(new Shape(r, inFeatures)), true);
        replace("lora_E", adapter, reset ? m.zeros(new Shape(r, 1)) : m.randomNormal(new Shape(r, 1)), true);
        replace("lora_B", adapter, reset ? m.randomNormal(0f, 0.02f, new Shape(outFeatures, r), DataType.FLOAT32)
                : m.randomNormal(new Shape(outFeatures, r)), true);
        replace("ranknum", adapter, m.create(new float[] {r}), false);
        ranks.put(adapter, r);
        scaling.put(adapter, loraAlpha > 0 ? loraAlpha : r);
    }

    private void replace(String container, String adapter, NDArray data, boolean trainable) {
        Param old = dict(container).remove(adapter);
        if (old != null) {
            old.data().close();
        }
        dict(container).put(adapter, data, trainable);
    }

    /**
     * peft's {@code resize_modules_by_rank_pattern} for one layer: keep the rank indices where {@code keep} is true
     * (rows of A and E, columns of B), with the adapter's alpha and dropout and the previous {@code ranknum}, so the
     * output scale is unchanged. The tensors stay trainable or frozen as they were.
     */
    public void resize(String adapter, List<Boolean> keep, double loraAlpha, double dropout, InitLoraWeights init) {
        int r = rank(adapter);
        if (keep.size() != r) {
            throw new IllegalArgumentException("rank_pattern has " + keep.size() + " entries for a layer of rank " + r
                    + " (adapter '" + adapter + "')");
        }
        boolean trainable = loraA(adapter).requiresGrad();
        NDArray a = keepRanks(loraA(adapter).data(), keep, 0);
        NDArray e = keepRanks(loraE(adapter).data(), keep, 0);
        NDArray b = keepRanks(loraB(adapter).data(), keep, 1);
        float ranknum = ranknum(adapter);
        updateLayer(adapter, (int) keep.stream().filter(k -> k).count(), loraAlpha, dropout, init);
        loraA(adapter).setData(a);
        loraE(adapter).setData(e);
        loraB(adapter).setData(b);
        replace("ranknum", adapter, a.getManager().create(new float[] {ranknum}), false);
        adapterParameters(adapter).values().forEach(p -> p.requiresGrad(trainable));
    }

    /**
     * A new 2-D array with the rows ({@code axis} 0) or columns ({@code axis} 1) of {@code a} where {@code keep} is
     * true, in {@code a}'s manager (rank tensors are small: this copies through Java).
     */
    static NDArray keepRanks(NDArray a, List<Boolean> keep, int axis) {
        int rows = (int) a.getShape().get(0);
        int cols = (int) a.getShape().get(1);
        if ((axis == 0 ? rows : cols) != keep.size()) {
            throw new IllegalArgumentException("rank_pattern has " + keep.size() + " entries but the tensor has shape "
                    + a.getShape());
        }
        int[] idx = java.util.stream.IntStream.range(0, keep.size()).filter(keep::get).toArray();
        float[] v = a.toFloatArray();
        float[] out = new float[axis == 0 ? idx.length * cols : rows * idx.length];
        for (int j = 0; j < idx.length; j++) {
            if (axis == 0) {
                System.arraycopy(v, idx[j] * cols, out, j * cols, cols);
            } else {
                for (int i = 0; i < rows; i++) {
                    out[i * idx.length + j] = v[i * cols + idx[j]];
                }
            }
        }
        NDArray res = a.getManager().create(out, axis == 0 ? new Shape(idx.length, cols) : new Shape(rows, idx.length));
        NDScope.unregister(res);
        return res;
    }

    @Override
    public Param loraA(String adapter) {
        return dict("lora_A").get(adapter);
    }

    @Override
    public Param loraB(String adapter) {
        return dict("lora_B").get(adapter);
    }

    /** The singular values {@code (r, 1)} of an adapter. */
    public Param loraE(String adapter) {
        return dict("lora_E").get(adapter);
    }

    /** The rank the output is divided by: the initial rank, also after pruning or a pruned load. */
    public float ranknum(String adapter) {
        // toFloatArray reads the value without creating an intermediate NDArray (getFloat(0) would, outside any scope).
        return dict("ranknum").get(adapter).data().toFloatArray()[0];
    }

    @Override
    protected boolean hasAdapter(String adapter) {
        return dict("lora_A").containsKey(adapter);
    }

    /** {@code scaling / (ranknum + 1e-5)} in float32, as peft's tensor arithmetic gives it. */
    private float scale(String adapter) {
        return (float) (scaling(adapter) / (ranknum(adapter) + 1e-5f));
    }

    @Override
    public NDArray forward(NDArray x) {
        boolean bypass = bypassAdapters();
        NDArray result = baseLayer().forward(x);
        if (bypass) {
            return result;
        }
        if (MixedBatch.current() != null) {
            throw new UnsupportedOperationException("adapter_names (mixed batches) is not supported by AdaLoRA");
        }
        for (String adapter : activeAdapters()) {
            if (!hasAdapter(adapter)) {
                continue;
            }
            NDArray xd = ((ModuleDict) child("lora_dropout")).get(adapter).forward(x);
            NDArray ae = loraA(adapter).data().mul(loraE(adapter).data());
            // Scaling the rank-r activations instead of the output: the same product, r/out times cheaper.
            NDArray h = F.mul(F.linear(xd, ae, null), scale(adapter));
            result = result.add(F.linear(h, loraB(adapter).data(), null));
        }
        return result;
    }

    /** {@code transpose(B (A⊙E), fan_in_fan_out) · scaling / (ranknum + 1e-5)}, shaped like the base weight. */
    @Override
    public NDArray deltaWeight(String adapter) {
        NDArray d = loraB(adapter).data().matMul(loraA(adapter).data().mul(loraE(adapter).data()));
        if (fanInFanOut) {
            d = d.transpose();
        }
        return F.mul(d, scale(adapter));
    }

    @Override
    protected void onAdapterDeleted(String adapter) {
        super.onAdapterDeleted(adapter);
        ((ModuleDict) child("lora_dropout")).remove(adapter);
        Param rn = dict("ranknum").remove(adapter);
        if (rn != null) {
            rn.data().close();
        }
    }

    @Override
    public String extraRepr() {
        return "adalora, in_features=" + inFeatures + ", out_features=" + outFeatures + ", " + super.extraRepr();
    }
}
