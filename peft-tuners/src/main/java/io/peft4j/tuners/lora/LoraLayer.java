package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.tuners.TunerLayer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What every LoRA layer shares (peft's {@code LoraLayer}): per-adapter rank and scaling, and merge / safe
 * merge / unmerge of {@code ΔW} into the base weight. Subclasses say how {@code ΔW} is computed.
 */
public abstract class LoraLayer extends TunerLayer {
    private static final List<String> ADAPTER_LAYERS =
            List.of("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector");

    protected final Map<String, Double> scaling = new HashMap<>();
    protected final Map<String, Integer> ranks = new HashMap<>();

    protected LoraLayer(Module baseLayer) {
        super(baseLayer);
    }

    @Override
    public List<String> adapterLayerNames() {
        return ADAPTER_LAYERS;
    }

    public double scaling(String adapter) {
        return scaling.get(adapter);
    }

    public int rank(String adapter) {
        return ranks.get(adapter);
    }

    /** Sets an adapter's scale (normally {@code alpha / r}, or {@code alpha / sqrt(r)} with rsLoRA). */
    public void setScaling(String adapter, double value) {
        scaling.put(adapter, value);
    }

    /**
     * As peft saves them: the DoRA magnitude {@code lora_magnitude_vector.<a>.weight} is keyed without its
     * {@code .weight} (the file format predates the module that now holds it).
     */
    @Override
    public Map<String, Param> adapterParameters(String adapter) {
        Map<String, Param> out = new java.util.LinkedHashMap<>();
        String dora = "lora_magnitude_vector." + adapter + ".weight";
        super.adapterParameters(adapter).forEach((k, p) -> out.put(k.equals(dora) ? k.substring(0, k.length() - 7) : k, p));
        return out;
    }

    /** {@code A} of an adapter as {@code (r, in)} ({@code lora_A.weight} or {@code lora_embedding_A}). */
    public abstract Param loraA(String adapter);

    /** {@code B} of an adapter as {@code (out, r)}. */
    public abstract Param loraB(String adapter);

    /** Whether this layer holds weights for {@code adapter}. */
    protected abstract boolean hasAdapter(String adapter);

    /** {@code ΔW} of one adapter, shaped like the base weight. */
    public abstract NDArray deltaWeight(String adapter);

    /** The base weight with one adapter merged in; plain LoRA adds {@link #deltaWeight}. */
    protected NDArray mergedWeight(String adapter, NDArray weight) {
        return weight.add(deltaWeight(adapter));
    }

    /** Inverse of {@link #mergedWeight}. */
    protected NDArray unmergedWeight(String adapter, NDArray weight) {
        return weight.sub(deltaWeight(adapter));
    }

    /** {@code Δb} of one adapter (LoRA with {@code lora_bias}), or null. */
    protected NDArray deltaBias(String adapter) {
        return null;
    }

    @Override
    public void merge(boolean safe, List<String> adapterNames) {
        List<String> names = adapterNames == null ? new ArrayList<>(activeAdapters()) : adapterNames;
        Param w = baseLayer().param("weight");
        Param bias = baseLayer().paramOrNull("bias");
        for (String adapter : names) {
            if (!hasAdapter(adapter) || mergedAdapters.contains(adapter)) {
                continue;
            }
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray mergedW = mergedWeight(adapter, w.data());
                NDArray db = bias == null ? null : deltaBias(adapter);
                NDArray mergedB = db == null ? null : bias.data().add(db);
                if (safe) {
                    requireFinite(mergedW, adapter, "weight");
                    if (mergedB != null) {
                        requireFinite(mergedB, adapter, "bias");
                    }
                }
                w.setData(mergedW);
                if (mergedB != null) {
                    bias.setData(mergedB);
                }
            }
            mergedAdapters.add(adapter);
        }
    }

    @Override
    public void validateMerge(List<String> adapterNames) {
        List<String> names = adapterNames == null ? new ArrayList<>(activeAdapters()) : adapterNames;
        NDArray w = baseLayer().param("weight").data();
        for (String adapter : names) {
            if (!hasAdapter(adapter) || mergedAdapters.contains(adapter)) {
                continue;
            }
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                requireFinite(w.add(deltaWeight(adapter)), adapter, "weight");
            }
        }
    }

    private static void requireFinite(NDArray merged, String adapter, String what) {
        if (!F.allFinite(merged)) {
            throw new IllegalStateException("NaNs detected in the merged " + what + "s. The adapter '" + adapter
                    + "' seems to be broken");
        }
    }

    @Override
    public void unmerge() {
        Param w = baseLayer().param("weight");
        Param bias = baseLayer().paramOrNull("bias");
        while (!mergedAdapters.isEmpty()) {
            String adapter = mergedAdapters.remove(mergedAdapters.size() - 1);
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                w.setData(unmergedWeight(adapter, w.data()));
                NDArray db = bias == null ? null : deltaBias(adapter);
                if (db != null) {
                    bias.setData(bias.data().sub(db));
                }
            }
        }
    }

    @Override
    protected void onAdapterDeleted(String adapter) {
        scaling.remove(adapter);
        ranks.remove(adapter);
    }
}
