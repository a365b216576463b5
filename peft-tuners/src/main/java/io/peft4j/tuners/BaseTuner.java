package io.peft4j.tuners;

import ai.djl.ndarray.NDArray;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * What every injectable PEFT method shares: find target modules by name, replace them with
 * {@link TunerLayer}s, decide what trains, merge/unmerge/unload, and map adapter tensors to the saved keys.
 * Its single child {@code model} is the user's model, so parameter paths read {@code model.<hf path>}.
 *
 * @param <C> the method's config type
 */
public abstract class BaseTuner<C extends PeftConfig> extends Module {
    private static final Logger LOG = LoggerFactory.getLogger(BaseTuner.class);

    private final Map<String, C> configs = new LinkedHashMap<>();
    private final List<String> activeAdapters = new ArrayList<>();
    private final List<String> targetedModuleNames = new ArrayList<>();

    protected BaseTuner(Module model) {
        registerModule("model", model);
    }

    /** The parameter-name prefix of this method's adapter tensors, e.g. {@code "lora_"}. */
    public abstract String prefix();

    /** Fills defaults that depend on the model (target modules by model type, {@code all-linear}). */
    protected abstract C prepareAdapterConfig(C config, Module model);

    /** Whether the module at {@code key} is targeted. */
    protected abstract TargetMatcher.Match matchTarget(C config, String key);

    /** Wraps (or extends) {@code target}, the child {@code targetName} of {@code parent}. */
    protected abstract void createAndReplace(C config, String adapterName, Module target, String targetName,
                                             Module parent, String currentKey);

    /** Extra checks when adding a second adapter. */
    protected void checkNewAdapterConfig(C config) {}

    /** The config's {@code modules_to_save} (whole modules trained and saved next to the adapter); null if none. */
    protected List<String> modulesToSave(C config) {
        return null;
    }

    /** Bias mode of a config ("none", "all", "lora_only"-style); methods without biases return "none". */
    protected String biasMode(C config) {
        return "none";
    }

    public Module model() {
        return child("model");
    }

    /**
     * What the wrapped model's output becomes before the caller sees it; methods that add a term to the loss
     * (AdaLoRA's orthogonal regulariser) override this.
     */
    public ModelOutput afterForward(ModelOutput output) {
        return output;
    }

    /** The config written to {@code adapter_config.json} for an adapter (AdaLoRA renames its rank-pattern keys). */
    public C configToSave(String adapterName, C config) {
        return config;
    }

    /**
     * The tensors written to {@code adapter_model.safetensors}: {@link #adapterStateDict} unless the method saves
     * something derived (AdaLoRA cuts pruned ranks). Arrays created for it go to {@code computed}, which the caller
     * closes after writing.
     */
    public LinkedHashMap<String, Param> tensorsToSave(String adapterName, String pathPrefix, List<NDArray> computed) {
        return adapterStateDict(adapterName, pathPrefix);
    }

    /** Called before a saved adapter's tensors are copied in, e.g. to give layers the saved shapes. */
    public void prepareToLoad(String adapterName) {}

    public Map<String, C> peftConfig() {
        return Collections.unmodifiableMap(configs);
    }

    public List<String> activeAdapters() {
        return Collections.unmodifiableList(activeAdapters);
    }

    public List<String> targetedModuleNames() {
        return Collections.unmodifiableList(targetedModuleNames);
    }

    /** Replaces a stored config (e.g. after {@code all-linear} expansion or loading). */
    protected void putConfig(String adapterName, C config) {
        configs.put(adapterName, config);
    }

    /**
     * Injects adapter {@code adapterName}: every matching module is wrapped. Fails if nothing matches,
     * listing module names that do exist.
     */
    public void injectAdapter(String adapterName, C config) {
        if (configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter with name " + adapterName + " already exists.");
        }
        if (!configs.isEmpty()) {
            checkNewAdapterConfig(config);
        }
        Module model = model();
        C prepared = prepareAdapterConfig(config, model);
        configs.put(adapterName, prepared);
        boolean anyExcluded = false;
        List<String> matched = new ArrayList<>();
        LinkedHashMap<String, Module> modules = model.namedModules();
        List<String> insideTuner = new ArrayList<>();
        for (Map.Entry<String, Module> e : modules.entrySet()) {
            if (e.getValue() instanceof TunerLayer || e.getValue() instanceof ModulesToSaveWrapper) {
                insideTuner.add(e.getKey() + ".");
            }
        }
        for (Map.Entry<String, Module> e : modules.entrySet()) {
            String key = e.getKey();
            if (key.isEmpty() || insideTuner.stream().anyMatch(key::startsWith)) {
                continue;
            }
            TargetMatcher.Match m = matchTarget(prepared, key);
            if (m == TargetMatcher.Match.EXCLUDED) {
                anyExcluded = true;
            } else if (m == TargetMatcher.Match.MATCHED) {
                matched.add(key);
            }
        }
        if (matched.isEmpty()) {
            configs.remove(adapterName);
            throw new NoMatchingTargetException(noMatchMessage(prepared, modules, anyExcluded));
        }
        for (String key : matched) {
            int dot = key.lastIndexOf('.');
            Module parent = dot < 0 ? model : model.getSubmodule(key.substring(0, dot));
            String name = dot < 0 ? key : key.substring(dot + 1);
            createAndReplace(prepared, adapterName, parent.child(name), name, parent, key);
            if (!targetedModuleNames.contains(key)) {
                targetedModuleNames.add(key);
            }
        }
        ModulesToSaveWrapper.wrapMatching(model(), adapterName, modulesToSave(prepared), insideTuner);
        if (activeAdapters.isEmpty()) {
            activeAdapters.add(adapterName);
        }
        // A newly added adapter stays inactive unless it is the only one (peft's add_adapter semantics).
        for (TunerLayer t : tunerLayers().values()) {
            t.setAdapter(new ArrayList<>(activeAdapters), false);
        }
        markOnlyAdaptersAsTrainable();
        if (prepared.inferenceMode()) {
            for (TunerLayer t : tunerLayers().values()) {
                t.adapterParameters(adapterName).values().forEach(p -> p.requiresGrad(false));
            }
        }
    }

    /** Every modules-to-save wrapper by path relative to {@link #model()}. */
    public LinkedHashMap<String, ModulesToSaveWrapper> modulesToSaveWrappers() {
        LinkedHashMap<String, ModulesToSaveWrapper> out = new LinkedHashMap<>();
        model().namedModules().forEach((k, m) -> {
            if (m instanceof ModulesToSaveWrapper w) {
                out.put(k, w);
            }
        });
        return out;
    }

    private boolean inferenceMode(String adapter) {
        C c = configs.get(adapter);
        return c == null || c.inferenceMode();
    }

    private String noMatchMessage(C config, Map<String, Module> modules, boolean anyExcluded) {
        if (anyExcluded) {
            return "All modules were excluded. This is likely unintended. Check your `target_modules` and "
                    + "`exclude_modules` configuration.";
        }
        List<String> leafNames = modules.keySet().stream()
                .filter(k -> !k.isEmpty())
                .map(k -> k.substring(k.lastIndexOf('.') + 1))
                .filter(n -> !n.chars().allMatch(Character::isDigit))
                .distinct()
                .collect(Collectors.toList());
        return "Target modules " + describeTargets(config) + " not found in the base model. Please check the "
                + "target modules and try again. Module names in this model: " + leafNames;
    }

    /**
     * What peft's injection does to a LoRA-family target list: {@code all-linear} becomes the leaf names of every
     * Linear / Conv1D except the output head, and a list of {@link TargetMatcher#MIN_TARGET_MODULES_FOR_OPTIMIZATION}
     * or more names is condensed to the shortest suffixes that match the same modules (the short form is what is saved).
     */
    protected static TargetModules resolveTargetModules(TargetModules t, Module model, TaskType taskType) {
        TargetModules out = t.isAllLinear() ? expandAllLinear(model, taskType) : t;
        if (!out.isRegex() && out.names().size() >= TargetMatcher.MIN_TARGET_MODULES_FOR_OPTIMIZATION) {
            List<String> others = new ArrayList<>();
            for (String key : model.namedModules().keySet()) {
                if (!out.names().contains(key) && out.names().stream().noneMatch(n -> key.endsWith("." + n))) {
                    others.add(key);
                }
            }
            Set<String> minimal = TargetMatcher.minimalTargetModules(out.names(), others);
            if (minimal.size() < out.names().size()) {
                out = TargetModules.of(minimal.toArray(String[]::new));
            }
        }
        return out;
    }

    /** {@code all-linear}: leaf names of every Linear/Conv1D except the output head. */
    private static TargetModules expandAllLinear(Module model, TaskType taskType) {
        Set<String> names = new LinkedHashSet<>();
        for (Map.Entry<String, Module> e : model.namedModules().entrySet()) {
            Module m = e.getValue();
            Module base = m instanceof TunerLayer t ? t.getBaseLayer() : m;
            if (base instanceof Linear || base instanceof Conv1D || base instanceof io.peft4j.nn.quant.Linear4bit) {
                String key = e.getKey();
                names.add(key.substring(key.lastIndexOf('.') + 1));
            }
        }
        String head = model instanceof PreTrainedModel p ? p.outputEmbeddingsPath() : null;
        if (head != null) {
            names.remove(head);
        } else if (taskType == TaskType.SEQ_CLS) {
            for (String h : List.of("score", "classifier")) {
                if (model.namedModules().containsKey(h)) {
                    names.remove(h);
                    break;
                }
            }
        }
        return TargetModules.of(names.toArray(String[]::new));
    }

    /**
     * peft's dispatch rule for {@code fan_in_fan_out}: GPT-2's Conv1D stores its weight {@code (in, out)}, so it
     * needs {@code true}; a Linear needs {@code false}. A wrong value is corrected in the adapter's stored (and
     * later saved) config with a warning, as peft mutates its config; the corrected value then warns no more.
     *
     * @param target a Linear or Conv1D about to be wrapped
     * @return the value the wrapper must use
     */
    protected final boolean fanInFanOut(String adapterName, Module target, java.util.function.Function<C, Boolean> get,
                                        java.util.function.BiFunction<C, Boolean, C> set) {
        boolean required = target instanceof io.peft4j.nn.layers.Conv1D;
        C stored = configs.get(adapterName);
        if (get.apply(stored) != required) {
            LOG.warn("fan_in_fan_out is set to {} but the target module is `{}`. Setting fan_in_fan_out to {}.",
                    required ? "False" : "True", required ? "Conv1D" : "Linear", required ? "True" : "False");
            configs.put(adapterName, set.apply(stored, required));
        }
        return required;
    }

    /** The config's {@code target_modules}, for error messages; null when the method has none. */
    protected io.peft4j.config.TargetModules targetModules(C config) {
        return null;
    }

    /** The config's target description for error messages. */
    protected String describeTargets(C config) {
        io.peft4j.config.TargetModules t = targetModules(config);
        return t == null ? String.valueOf(config) : t.describe();
    }

    /** Every tuner layer by path relative to {@link #model()}. */
    public LinkedHashMap<String, TunerLayer> tunerLayers() {
        LinkedHashMap<String, TunerLayer> out = new LinkedHashMap<>();
        model().namedModules().forEach((k, m) -> {
            if (m instanceof TunerLayer t) {
                out.put(k, t);
            }
        });
        return out;
    }

    /**
     * Freezes everything except adapter tensors of the active adapters, then applies the bias mode of each
     * active adapter ("all": every bias trains; "X_only": biases of wrapped layers train).
     */
    public void markOnlyAdaptersAsTrainable() {
        Module model = model();
        java.util.Set<Param> adapterParams = Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (TunerLayer t : tunerLayers().values()) {
            for (String a : t.adapterNames()) {
                adapterParams.addAll(t.adapterParameters(a).values());
            }
        }
        for (Param p : model.namedParameters().values()) {
            if (!adapterParams.contains(p)) {
                p.requiresGrad(false);
            }
        }
        for (ModulesToSaveWrapper w : modulesToSaveWrappers().values()) {
            String a = w.activeAdapter();
            if (a != null && activeAdapters.contains(a)) {
                w.setAdapter(a, inferenceMode(a));
            }
        }
        for (String adapter : activeAdapters) {
            C config = configs.get(adapter);
            String bias = biasMode(config);
            if ("none".equals(bias)) {
                continue;
            }
            if ("all".equals(bias)) {
                model.namedParameters().forEach((k, p) -> {
                    if (k.equals("bias") || k.endsWith(".bias")) {
                        p.requiresGrad(true);
                    }
                });
            } else if (bias.endsWith("_only")) {
                for (TunerLayer t : tunerLayers().values()) {
                    Param b = t.getBaseLayer().paramOrNull("bias");
                    if (b != null) {
                        b.requiresGrad(true);
                    }
                }
            } else {
                throw new IllegalArgumentException("unknown bias mode '" + bias + "'");
            }
        }
    }

    /** Activates one or more adapters on every layer (and makes them trainable unless inference mode). */
    public void setAdapter(List<String> names) {
        for (String n : names) {
            if (!configs.containsKey(n)) {
                throw new IllegalArgumentException("Adapter " + n + " not found; available: " + configs.keySet());
            }
        }
        for (TunerLayer t : tunerLayers().values()) {
            if (t.merged()) {
                LOG.warn("Adapter cannot be set when the model is merged. Unmerging the model first.");
                t.unmerge();
            }
            t.setAdapter(names, names.stream().allMatch(n -> configs.get(n).inferenceMode()));
        }
        for (ModulesToSaveWrapper w : modulesToSaveWrappers().values()) {
            w.setAdapter(names.get(0), inferenceMode(names.get(0)));
        }
        activeAdapters.clear();
        activeAdapters.addAll(names);
    }

    /** Adapters on or off on every layer; off gives the base model (merged layers are unmerged first). */
    public void enableAdapterLayers(boolean enabled) {
        boolean inference = activeAdapters.stream().allMatch(n -> configs.get(n).inferenceMode());
        if (!enabled) {
            for (String a : activeAdapters) {
                if (!"none".equals(biasMode(configs.get(a)))) {
                    LOG.warn("Careful, disabling adapter layers with bias configured to be '{}' does not produce "
                            + "the same output as the base model would without adaptation.", biasMode(configs.get(a)));
                }
            }
        }
        for (TunerLayer t : tunerLayers().values()) {
            t.enableAdapters(enabled, inference);
        }
        for (ModulesToSaveWrapper w : modulesToSaveWrappers().values()) {
            w.enableAdapters(enabled, inference);
        }
    }

    /** Merges the given adapters (default: active) into the base weights, keeping them reversible. */
    public void mergeAdapter(List<String> adapterNames, boolean safeMerge) {
        if (safeMerge) {
            tunerLayers().values().forEach(t -> t.validateMerge(adapterNames));
        }
        for (TunerLayer t : tunerLayers().values()) {
            t.merge(safeMerge, adapterNames);
        }
    }

    public void unmergeAdapter() {
        for (TunerLayer t : tunerLayers().values()) {
            t.unmerge();
        }
    }

    /**
     * Merges (optionally) and replaces every tuner layer by its base layer. Returns the base model; this
     * tuner must not be used afterwards.
     */
    public Module mergeAndUnload(boolean merge, boolean safeMerge, List<String> adapterNames) {
        Module model = model();
        if (merge && safeMerge) {
            tunerLayers().values().forEach(t -> t.validateMerge(adapterNames));
        }
        if (merge) {
            // Merge everything first: a safe merge that fails must leave the model unchanged and usable.
            List<TunerLayer> done = new ArrayList<>();
            try {
                for (TunerLayer t : tunerLayers().values()) {
                    t.merge(safeMerge, adapterNames);
                    done.add(t);
                }
            } catch (RuntimeException e) {
                for (TunerLayer t : done) {
                    t.unmerge();
                }
                throw e;
            }
        }
        for (Map.Entry<String, TunerLayer> e : tunerLayers().entrySet()) {
            TunerLayer t = e.getValue();
            for (String a : new ArrayList<>(t.adapterNames())) {
                t.mergedAdapters.remove(a);
                t.deleteAdapter(a);
            }
            if (e.getKey().isEmpty()) {
                throw new IllegalStateException("cannot unload a model that is itself a tuner layer");
            }
            model.setSubmodule(e.getKey(), t.getBaseLayer());
        }
        // The trained head replaces the wrapper (peft keeps the active copy, or the original if none).
        for (Map.Entry<String, ModulesToSaveWrapper> e : modulesToSaveWrappers().entrySet()) {
            model.setSubmodule(e.getKey(), e.getValue().activeModule());
        }
        if (model instanceof PreTrainedModel p) {
            untieIfNeeded(p);
        }
        return model;
    }

    /** After a merge, tied embeddings that no longer share storage are declared untied, as peft does. */
    private static void untieIfNeeded(PreTrainedModel p) {
        if (!p.config().getBoolean("tie_word_embeddings", false) || p.outputEmbeddingsPath() == null) {
            return;
        }
        Param in = p.inputEmbeddings().param("weight");
        Param out = p.getSubmodule(p.outputEmbeddingsPath()).param("weight");
        if (in != out) {
            LOG.warn("The input and output embeddings are no longer tied after merging; setting "
                    + "tie_word_embeddings=false in the config.");
            p.setConfig(p.config().with("tie_word_embeddings", false));
        }
    }

    /** Deletes an adapter from every layer; a new active adapter is chosen deterministically if needed. */
    public void deleteAdapter(String adapterName) {
        if (!configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter " + adapterName + " does not exist");
        }
        configs.remove(adapterName);
        for (TunerLayer t : tunerLayers().values()) {
            t.deleteAdapter(adapterName);
        }
        for (ModulesToSaveWrapper w : modulesToSaveWrappers().values()) {
            w.deleteAdapter(adapterName);
        }
        if (activeAdapters.remove(adapterName)) {
            List<String> remaining = new ArrayList<>(configs.keySet());
            Collections.sort(remaining);
            if (!remaining.isEmpty()) {
                LOG.warn("Adapter {} was active which is now deleted. Setting active adapter to {}.", adapterName,
                        remaining.get(0));
                setAdapter(List.of(remaining.get(0)));
            }
        }
    }

    /**
     * The adapter's tensors under the keys Hugging Face saves: paths relative to this tuner's parent with the
     * adapter-name segment removed ({@code ...q_proj.lora_A.default.weight -> ...q_proj.lora_A.weight}).
     *
     * @param pathPrefix the path of this tuner inside the saved model, e.g. {@code "base_model."}
     */
    public LinkedHashMap<String, Param> adapterStateDict(String adapterName, String pathPrefix) {
        LinkedHashMap<String, Param> out = new LinkedHashMap<>();
        C config = configs.get(adapterName);
        String bias = biasMode(config);
        for (Map.Entry<String, TunerLayer> e : tunerLayers().entrySet()) {
            String layerPath = pathPrefix + "model." + e.getKey();
            for (Map.Entry<String, Param> p : e.getValue().adapterParameters(adapterName).entrySet()) {
                out.put(removeAdapterName(layerPath + "." + p.getKey(), adapterName), p.getValue());
            }
        }
        for (Map.Entry<String, ModulesToSaveWrapper> e : modulesToSaveWrappers().entrySet()) {
            String path = pathPrefix + "model." + e.getKey();
            Module copy = e.getValue().copyOf(adapterName);
            if (copy != null) {
                copy.namedStateEntries().forEach((k, p) -> out.put(path + "." + k, p));
            }
        }
        if ("all".equals(bias)) {
            model().namedStateEntries().forEach((k, p) -> {
                if ((k.equals("bias") || k.endsWith(".bias")) && !k.contains("." + prefix())) {
                    out.put(pathPrefix + "model." + k, p);
                }
            });
        } else if (bias.endsWith("_only")) {
            for (Map.Entry<String, TunerLayer> e : tunerLayers().entrySet()) {
                Param b = e.getValue().baseLayer().paramOrNull("bias");
                if (b != null) {
                    out.put(pathPrefix + "model." + e.getKey() + ".base_layer.bias", b);
                }
            }
        }
        return out;
    }

    /**
     * peft's {@code _remove_adapter_name_from_state_dict_key}: strip a trailing {@code .<adapter>}, else the
     * {@code .<adapter>} directly before the last segment.
     */
    public static String removeAdapterName(String key, String adapterName) {
        String suffix = "." + adapterName;
        if (key.endsWith(suffix)) {
            return key.substring(0, key.length() - suffix.length());
        }
        int last = key.lastIndexOf('.');
        if (last > 0 && key.substring(0, last).endsWith(suffix)) {
            return key.substring(0, last - suffix.length()) + key.substring(last);
        }
        return key;
    }
}
