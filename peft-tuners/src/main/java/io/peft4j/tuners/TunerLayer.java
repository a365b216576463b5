package io.peft4j.tuners;

import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.Param;
import io.peft4j.nn.ParameterDict;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The wrapper that replaces a targeted module: it holds the original as {@code base_layer} and one entry
 * per adapter in each adapter container ({@code lora_A}, {@code lora_B}, ...). Shared by every tuner.
 */
public abstract class TunerLayer extends Module {
    private final List<String> activeAdapters = new ArrayList<>(List.of("default"));
    protected final List<String> mergedAdapters = new ArrayList<>();
    private boolean adaptersDisabled;

    protected TunerLayer(Module baseLayer) {
        registerModule("base_layer", baseLayer);
    }

    /**
     * {@code {in, out}} of a Linear (weight {@code (out, in)}) or, with {@code fanInFanOut}, of a GPT-2 Conv1D
     * (weight {@code (in, out)}).
     */
    protected static long[] linearFeatures(Module base, boolean fanInFanOut) {
        if (base instanceof io.peft4j.nn.quant.Linear4bit q) {
            return new long[] {q.inFeatures(), q.outFeatures()};
        }
        long[] s = base.param("weight").shape().getShape();
        return fanInFanOut ? new long[] {s[0], s[1]} : new long[] {s[1], s[0]};
    }

    /** Names of the children holding trainable per-adapter tensors (ModuleDict or ParameterDict). */
    public abstract List<String> adapterLayerNames();

    /** Adds {@code ΔW} of the given adapters to the base weights; {@code safe} refuses non-finite results. */
    public abstract void merge(boolean safe, List<String> adapterNames);

    /**
     * Throws if merging these adapters would produce non-finite weights, without changing anything; lets a
     * safe merge check every layer before it modifies any.
     */
    public void validateMerge(List<String> adapterNames) {}

    /** Subtracts merged adapters again, most recent first. */
    public abstract void unmerge();

    public Module baseLayer() {
        return child("base_layer");
    }

    /** The innermost wrapped module. */
    public Module getBaseLayer() {
        Module m = baseLayer();
        while (m instanceof TunerLayer t) {
            m = t.baseLayer();
        }
        return m;
    }

    public List<String> activeAdapters() {
        return Collections.unmodifiableList(activeAdapters);
    }

    public List<String> mergedAdapters() {
        return Collections.unmodifiableList(mergedAdapters);
    }

    public boolean merged() {
        return !mergedAdapters.isEmpty();
    }

    public boolean adaptersDisabled() {
        return adaptersDisabled;
    }

    /**
     * Whether the forward pass is just the base layer's: adapters disabled (a merged layer is unmerged first, as
     * peft does) or merged into the weights. Call before running the base layer.
     */
    protected boolean bypassAdapters() {
        if (adaptersDisabled) {
            if (merged()) {
                unmerge();
            }
            return true;
        }
        return merged();
    }

    /** Every adapter name present in any container of this layer. */
    public Set<String> adapterNames() {
        Set<String> out = new LinkedHashSet<>();
        for (String c : adapterLayerNames()) {
            if (hasChild(c)) {
                Module container = child(c);
                if (container instanceof ModuleDict d) {
                    out.addAll(d.asMap().keySet());
                } else if (container instanceof ParameterDict p) {
                    out.addAll(p.asMap().keySet());
                }
            }
        }
        return out;
    }

    /** Parameters of one adapter keyed by path relative to this layer, e.g. {@code lora_A.default.weight}. */
    public Map<String, Param> adapterParameters(String adapter) {
        Map<String, Param> out = new LinkedHashMap<>();
        for (String c : adapterLayerNames()) {
            if (!hasChild(c)) {
                continue;
            }
            Module container = child(c);
            if (container instanceof ModuleDict d && d.containsKey(adapter)) {
                d.get(adapter).namedStateEntries().forEach((k, p) -> out.put(c + "." + adapter + "." + k, p));
            } else if (container instanceof ParameterDict pd && pd.containsKey(adapter)) {
                out.put(c + "." + adapter, pd.get(adapter));
            }
        }
        return out;
    }

    /** Makes exactly these adapters active and trainable (unless {@code inferenceMode}); others are frozen. */
    public void setAdapter(List<String> names, boolean inferenceMode) {
        for (String a : adapterNames()) {
            boolean on = names.contains(a) && !inferenceMode;
            adapterParameters(a).values().forEach(p -> p.requiresGrad(on));
        }
        activeAdapters.clear();
        activeAdapters.addAll(names);
    }

    /** Turns adapters on (re-applying the active set) or off (the layer behaves as its base layer). */
    public void enableAdapters(boolean enabled, boolean inferenceMode) {
        if (enabled) {
            setAdapter(new ArrayList<>(activeAdapters), inferenceMode);
            adaptersDisabled = false;
        } else {
            for (String a : adapterNames()) {
                adapterParameters(a).values().forEach(p -> p.requiresGrad(false));
            }
            adaptersDisabled = true;
        }
    }

    /** Removes an adapter from every container; refuses when it is merged. */
    public void deleteAdapter(String adapter) {
        if (mergedAdapters.contains(adapter)) {
            throw new IllegalStateException("adapter '" + adapter + "' is merged; unmerge it before deleting");
        }
        for (String c : adapterLayerNames()) {
            if (!hasChild(c)) {
                continue;
            }
            Module container = child(c);
            if (container instanceof ModuleDict d) {
                Module removed = d.remove(adapter);
                if (removed != null) {
                    removed.namedParameters().values().forEach(p -> p.data().close());
                }
            } else if (container instanceof ParameterDict pd) {
                Param removed = pd.remove(adapter);
                if (removed != null) {
                    removed.data().close();
                }
            }
        }
        activeAdapters.remove(adapter);
        onAdapterDeleted(adapter);
    }

    /** Hook for per-adapter bookkeeping (scaling, ranks) of subclasses. */
    protected void onAdapterDeleted(String adapter) {}

    @Override
    public String extraRepr() {
        return "active=" + activeAdapters + (merged() ? ", merged=" + mergedAdapters : "")
                + (adaptersDisabled ? ", disabled" : "");
    }
}
