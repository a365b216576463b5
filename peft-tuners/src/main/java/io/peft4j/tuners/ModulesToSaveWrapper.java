package io.peft4j.tuners;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.Param;

import java.util.ArrayList;
import java.util.List;

/**
 * peft's {@code ModulesToSaveWrapper}: a module listed in {@code modules_to_save} (e.g. a classification head)
 * is kept frozen as {@code original_module}, and each adapter trains its own full copy in
 * {@code modules_to_save.<adapter>}. Forward runs the active adapter's copy, or the original when adapters are
 * disabled or the active adapter has no copy. Saved under the wrapped path with both segments removed
 * ({@code score.modules_to_save.default.weight -> score.weight}).
 */
public final class ModulesToSaveWrapper extends Module {
    private String activeAdapter;
    private boolean disabled;

    public ModulesToSaveWrapper(Module original, String adapterName) {
        registerModule("original_module", original);
        registerModule("modules_to_save", new ModuleDict());
        update(adapterName);
        activeAdapter = adapterName;
    }

    public Module originalModule() {
        return child("original_module");
    }

    private ModuleDict copies() {
        return (ModuleDict) child("modules_to_save");
    }

    /**
     * peft's {@code _set_trainable}: every module of {@code model} whose path ends with (plain string suffix, as peft
     * tests it) one of {@code names} gets a wrapper with a copy for {@code adapterName}, or, if it already is a
     * wrapper, a copy added. Paths starting with one of {@code skipPrefixes} (e.g. inside tuner layers) are left
     * alone, and so is everything inside a wrapper; the wrapped paths are added to {@code skipPrefixes}.
     */
    public static void wrapMatching(Module model, String adapterName, List<String> names, List<String> skipPrefixes) {
        if (names == null || names.isEmpty()) {
            return;
        }
        for (String key : new java.util.ArrayList<>(model.namedModules().keySet())) {
            if (key.isEmpty() || skipPrefixes.stream().anyMatch(key::startsWith) || names.stream().noneMatch(key::endsWith)) {
                continue;
            }
            Module target = model.getSubmodule(key);
            if (target instanceof ModulesToSaveWrapper w) {
                w.update(adapterName);
            } else {
                model.setSubmodule(key, new ModulesToSaveWrapper(target, adapterName));
            }
            skipPrefixes.add(key + ".");
        }
    }

    /** Adds a trainable copy of the original for {@code adapterName} (no-op when it exists). */
    public void update(String adapterName) {
        if (!copies().containsKey(adapterName)) {
            Module copy = originalModule().deepCopy();
            copies().put(adapterName, copy);
        }
        originalModule().requiresGrad(false);
    }

    public List<String> adapterNames() {
        return new ArrayList<>(copies().asMap().keySet());
    }

    public String activeAdapter() {
        return activeAdapter;
    }

    /** The copy of one adapter, or null. */
    public Module copyOf(String adapterName) {
        return copies().get(adapterName);
    }

    /** Activates one adapter's copy; it trains unless {@code inferenceMode}, every other copy is frozen. */
    public void setAdapter(String adapterName, boolean inferenceMode) {
        for (String a : adapterNames()) {
            copies().get(a).requiresGrad(a.equals(adapterName) && !inferenceMode);
        }
        activeAdapter = adapterName;
    }

    /** Off: forward uses the original module and the copies are frozen; on: restores the active adapter. */
    public void enableAdapters(boolean enabled, boolean inferenceMode) {
        disabled = !enabled;
        if (enabled) {
            setAdapter(activeAdapter, inferenceMode);
        } else {
            copies().asMap().values().forEach(m -> m.requiresGrad(false));
        }
    }

    /** Removes an adapter's copy, closing its tensors. */
    public void deleteAdapter(String adapterName) {
        Module removed = copies().remove(adapterName);
        if (removed != null) {
            removed.namedParameters().values().forEach(p -> p.data().close());
        }
        if (adapterName.equals(activeAdapter)) {
            activeAdapter = null;
        }
    }

    /** The module forward runs now: the active copy, or the original. */
    public Module activeModule() {
        Module copy = disabled || activeAdapter == null ? null : copies().get(activeAdapter);
        return copy != null ? copy : originalModule();
    }

    /** Parameters of one adapter's copy, keyed by path relative to this wrapper. */
    public java.util.Map<String, Param> adapterParameters(String adapterName) {
        java.util.Map<String, Param> out = new java.util.LinkedHashMap<>();
        Module copy = copies().get(adapterName);
        if (copy != null) {
            copy.namedStateEntries().forEach((k, p) -> out.put("modules_to_save." + adapterName + "." + k, p));
        }
        return out;
    }

    @Override
    public NDArray forward(NDArray input) {
        return activeModule().forward(input);
    }

    @Override
    public String extraRepr() {
        return "active=" + activeAdapter + (disabled ? ", disabled" : "");
    }
}
