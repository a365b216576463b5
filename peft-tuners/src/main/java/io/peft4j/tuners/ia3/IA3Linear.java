package io.peft4j.tuners.ia3;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.ParameterDict;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;
import io.peft4j.tuners.TunerLayer;

import java.util.ArrayList;
import java.util.List;

/**
 * IA³ around a {@link Linear} or GPT-2 {@link Conv1D}: a learned vector {@code ia3_l} rescales the layer's output
 * ({@code (out, 1)}: {@code y = base(x) ⊙ l}) or, for feed-forward modules, its input ({@code (1, in)}:
 * {@code y = base(x ⊙ l)}). Several active adapters multiply their vectors.
 */
public final class IA3Linear extends TunerLayer {
    private static final List<String> ADAPTER_LAYERS = List.of("ia3_l");

    private final boolean feedforward;
    private final boolean fanInFanOut;
    private final long inFeatures;
    private final long outFeatures;

    public IA3Linear(Module baseLayer, boolean feedforward, boolean fanInFanOut) {
        super(baseLayer);
        long[] features = linearFeatures(baseLayer, fanInFanOut);
        this.feedforward = feedforward;
        this.fanInFanOut = fanInFanOut;
        this.inFeatures = features[0];
        this.outFeatures = features[1];
        registerModule("ia3_l", new ParameterDict());
    }

    public static boolean supports(Module m) {
        return m instanceof Linear || m instanceof Conv1D;
    }

    public boolean isFeedforward() {
        return feedforward;
    }

    @Override
    public List<String> adapterLayerNames() {
        return ADAPTER_LAYERS;
    }

    private ParameterDict vectors() {
        return (ParameterDict) child("ia3_l");
    }

    /** Adds an adapter: ones (a no-op) with {@code init_ia3_weights}, else N(0, 1) as peft draws before init. */
    public void updateLayer(String adapter, boolean initIa3Weights) {
        Shape shape = feedforward ? new Shape(1, inFeatures) : new Shape(outFeatures, 1);
        var m = baseLayer().param("weight").data().getManager();
        NDArray v = initIa3Weights ? m.ones(shape) : m.randomNormal(shape);
        Param old = vectors().remove(adapter);
        if (old != null) {
            old.data().close();
        }
        vectors().put(adapter, v, true);
    }

    /** The product of the active adapters' vectors, flattened; null when none is present. */
    private NDArray scaling() {
        NDArray s = null;
        for (String a : activeAdapters()) {
            if (vectors().containsKey(a)) {
                NDArray v = vectors().get(a).data().flatten();
                s = s == null ? v : s.mul(v);
            }
        }
        return s;
    }

    @Override
    public NDArray forward(NDArray x) {
        if (bypassAdapters()) {
            return baseLayer().forward(x);
        }
        NDArray s = scaling();
        if (s == null) {
            return baseLayer().forward(x);
        }
        return feedforward ? baseLayer().forward(x.mul(s)) : baseLayer().forward(x).mul(s);
    }

    /** The vector laid out to scale the stored weight (rows for outputs, columns for inputs; transposed for Conv1D). */
    private NDArray weightFactor(String adapter) {
        NDArray l = vectors().get(adapter).data();
        return fanInFanOut ? l.transpose() : l;
    }

    @Override
    public void merge(boolean safe, List<String> adapterNames) {
        List<String> names = adapterNames == null ? new ArrayList<>(activeAdapters()) : adapterNames;
        Param w = baseLayer().param("weight");
        Param bias = baseLayer().paramOrNull("bias");
        for (String adapter : names) {
            if (!vectors().containsKey(adapter) || mergedAdapters.contains(adapter)) {
                continue;
            }
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray merged = w.data().mul(weightFactor(adapter));
                if (safe && !F.allFinite(merged)) {
                    throw new IllegalStateException("NaNs detected in the merged weights. The adapter '" + adapter
                            + "' seems to be broken");
                }
                w.setData(merged);
                if (!feedforward && bias != null) {
                    bias.setData(bias.data().mul(vectors().get(adapter).data().reshape(bias.shape())));
                }
            }
            mergedAdapters.add(adapter);
        }
    }

    /** Divides by {@code l + 1e-8}, as peft does: exact only up to that epsilon. */
    @Override
    public void unmerge() {
        Param w = baseLayer().param("weight");
        Param bias = baseLayer().paramOrNull("bias");
        while (!mergedAdapters.isEmpty()) {
            String adapter = mergedAdapters.remove(mergedAdapters.size() - 1);
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                w.setData(w.data().div(F.add(weightFactor(adapter), 1e-8f)));
                if (!feedforward && bias != null) {
                    NDArray l = vectors().get(adapter).data().reshape(bias.shape());
                    bias.setData(bias.data().div(F.add(l, 1e-8f)));
                }
            }
        }
    }
}
