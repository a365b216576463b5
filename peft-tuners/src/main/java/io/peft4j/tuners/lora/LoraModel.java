package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.TargetMatcher;
import io.peft4j.tuners.TargetModuleDefaults;
import io.peft4j.tuners.TunerLayer;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The LoRA injector: wraps every targeted Linear / Conv1D in a {@link LoraLinear}, an Embedding in a {@link LoraEmbedding}. */
public final class LoraModel extends BaseTuner<LoraConfig> {

    public LoraModel(Module model, LoraConfig config, String adapterName) {
        super(model);
        injectAdapter(adapterName, config);
    }

    @Override
    public String prefix() {
        return "lora_";
    }

    @Override
    protected LoraConfig prepareAdapterConfig(LoraConfig config, Module model) {
        return prepare(config, model);
    }

    /** Target defaults by model type, {@code all-linear} expanded and long lists condensed, as peft stores them. */
    static LoraConfig prepare(LoraConfig config, Module model) {
        LoraConfig c = config;
        if (c.targetModules() == null) {
            c = c.toBuilder().targetModules(TargetModuleDefaults.lookup(TargetModuleDefaults.LORA, model,
                    "target_modules", "targets")).build();
        }
        if (c.targetModules().isAllLinear()) {
            c = c.toBuilder().targetModules(expandAllLinear(model, c)).build();
        }
        TargetModules t = c.targetModules();
        if (!t.isRegex() && t.names().size() >= TargetMatcher.MIN_TARGET_MODULES_FOR_OPTIMIZATION) {
            // As peft: long lists (e.g. every full module path) are condensed, and the short form is what is saved.
            List<String> others = new ArrayList<>();
            for (String key : model.namedModules().keySet()) {
                if (!t.names().contains(key) && t.names().stream().noneMatch(n -> key.endsWith("." + n))) {
                    others.add(key);
                }
            }
            Set<String> minimal = TargetMatcher.minimalTargetModules(t.names(), others);
            if (minimal.size() < t.names().size()) {
                c = c.toBuilder().targetModules(TargetModules.of(minimal.toArray(String[]::new))).build();
            }
        }
        return c;
    }

    /** {@code all-linear}: leaf names of every Linear/Conv1D except the output head. */
    private static TargetModules expandAllLinear(Module model, LoraConfig config) {
        Set<String> names = new LinkedHashSet<>();
        for (Map.Entry<String, Module> e : model.namedModules().entrySet()) {
            Module m = e.getValue();
            Module base = m instanceof TunerLayer t ? t.getBaseLayer() : m;
            if (base instanceof Linear || base instanceof Conv1D) {
                String key = e.getKey();
                names.add(key.substring(key.lastIndexOf('.') + 1));
            }
        }
        String head = model instanceof PreTrainedModel p ? p.outputEmbeddingsPath() : null;
        if (head != null) {
            names.remove(head);
        } else if (config.taskType() == TaskType.SEQ_CLS) {
            for (String h : List.of("score", "classifier")) {
                if (model.namedModules().containsKey(h)) {
                    names.remove(h);
                    break;
                }
            }
        }
        return TargetModules.of(names.toArray(String[]::new));
    }

    @Override
    protected TargetMatcher.Match matchTarget(LoraConfig c, String key) {
        return match(c, key);
    }

    private static TargetMatcher.Match match(LoraConfig c, String key) {
        return TargetMatcher.check(c.targetModules(), c.excludeModules(), c.modulesToSave(),
                c.layersToTransform(), c.layersPattern(), key);
    }

    /**
     * The Linear / Conv1D modules {@code config} targets in {@code model} by path (for a module LoRA already wraps:
     * its base layer), before any injection; {@code config} must be {@link #prepare}d.
     */
    static LinkedHashMap<String, Module> linearTargets(Module model, LoraConfig config) {
        LinkedHashMap<String, Module> out = new LinkedHashMap<>();
        List<String> inside = new ArrayList<>();
        for (Map.Entry<String, Module> e : model.namedModules().entrySet()) {
            String key = e.getKey();
            if (key.isEmpty() || inside.stream().anyMatch(key::startsWith)) {
                continue;
            }
            Module m = e.getValue();
            if (m instanceof TunerLayer || m instanceof io.peft4j.tuners.ModulesToSaveWrapper) {
                inside.add(key + ".");
            }
            Module base = m instanceof LoraLinear l ? l.baseLayer() : m;
            if (LoraLinear.supports(base) && match(config, key) == TargetMatcher.Match.MATCHED) {
                out.put(key, base);
            }
        }
        return out;
    }

    @Override
    protected void checkNewAdapterConfig(LoraConfig config) {
        long withBias = peftConfig().values().stream().filter(c -> c.bias() != LoraConfig.Bias.NONE).count();
        if (withBias + (config.bias() != LoraConfig.Bias.NONE ? 1 : 0) > 1) {
            throw new IllegalArgumentException("LoraModel supports only 1 adapter with bias. When using multiple "
                    + "adapters, set bias to 'none' for all adapters.");
        }
    }

    @Override
    protected List<String> modulesToSave(LoraConfig config) {
        return config.modulesToSave();
    }

    @Override
    protected String biasMode(LoraConfig config) {
        return config.bias().value();
    }

    @Override
    protected TargetModules targetModules(LoraConfig config) {
        return config.targetModules();
    }

    @Override
    protected void createAndReplace(LoraConfig c, String adapterName, Module target, String targetName,
                                    Module parent, String currentKey) {
        int r = TargetMatcher.patternValue(c.rankPattern(), currentKey, c.r());
        Number alpha = TargetMatcher.patternValue(c.alphaPattern(), currentKey, c.loraAlpha());
        if (c.useDora() && (target instanceof LoraEmbedding || LoraEmbedding.supports(target))) {
            throw new UnsupportedOperationException("use_dora=true on an Embedding is not supported yet by peft4j "
                    + "(module " + currentKey + "); DoRA works on Linear and GPT-2 Conv1D");
        }
        if (target instanceof LoraEmbedding existing) {
            existing.updateLayer(adapterName, r, alpha.doubleValue(), c.loraDropout(), c.initLoraWeights(),
                    c.useRslora(), c.loraBias());
            return;
        }
        if (LoraEmbedding.supports(target)) {
            LoraEmbedding layer = new LoraEmbedding(target);
            layer.updateLayer(adapterName, r, alpha.doubleValue(), c.loraDropout(), c.initLoraWeights(),
                    c.useRslora(), c.loraBias());
            parent.setChild(targetName, layer);
            return;
        }
        LoraLinear layer;
        if (target instanceof LoraLinear existing) {
            layer = existing;
        } else if (LoraLinear.supports(target)) {
            boolean fanInFanOut = fanInFanOut(adapterName, target, LoraConfig::fanInFanOut,
                    (cfg, v) -> cfg.toBuilder().fanInFanOut(v).build());
            layer = new LoraLinear(target, fanInFanOut);
            parent.setChild(targetName, layer);
        } else {
            throw new IllegalArgumentException("Target module " + currentKey + " (" + target.getClass().getSimpleName()
                    + ") is not supported. Currently, only `Linear`, `Embedding` and GPT-2 `Conv1D` are supported.");
        }
        layer.updateLayer(adapterName, r, alpha.doubleValue(), c.loraDropout(), c.initLoraWeights(),
                c.useRslora(), c.loraBias(), c.useDora());
        if ("lora_ga".equals(c.initLoraWeights().name())) {
            // DoRA's magnitude, taken from the default init above, is unchanged: W − s·B·A + s·B·A = W.
            LoraGA.initialize(layer, adapterName, c, currentKey);
        }
    }

    /**
     * peft's {@code add_weighted_adapter} for {@code "linear"} and {@code "cat"}: a new, inactive, frozen adapter
     * {@code name} with {@code lora_alpha = r} (scaling 1) on the union of the adapters' targets.
     * <ul>
     *   <li>{@code cat}: {@code A = cat(A_i)}, {@code B = cat(w_i·s_i·B_i)}, so {@code ΔW = Σ w_i·ΔW_i} exactly
     *       (rank {@code Σ r_i});</li>
     *   <li>{@code linear}: {@code A = Σ √(w_i·s_i)·A_i}, {@code B = Σ √(w_i·s_i)·B_i} (same rank required; with
     *       several adapters this is not {@code Σ w_i·ΔW_i}, exactly as in peft).</li>
     * </ul>
     * Combinations peft computes wrongly are refused: rsLoRA (the new adapter would get {@code alpha/√r ≠ 1}),
     * DoRA (magnitudes are not combined), and rank/alpha patterns (they would be copied from the first adapter).
     */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String name, String combinationType) {
        if (adapters.isEmpty() || adapters.size() != weights.size()) {
            throw new IllegalArgumentException("adapters and weights must be non-empty lists of the same length");
        }
        List<LoraConfig> configs = new ArrayList<>();
        for (String a : adapters) {
            LoraConfig c = peftConfig().get(a);
            if (c == null) {
                throw new IllegalArgumentException("Adapter " + a + " does not exist");
            }
            if (c.useRslora() || c.useDora()) {
                throw new IllegalArgumentException("add_weighted_adapter: adapter '" + a + "' uses "
                        + (c.useDora() ? "DoRA" : "rsLoRA") + ", which peft combines incorrectly; combine plain LoRA adapters only");
            }
            if (!c.rankPattern().isEmpty() || !c.alphaPattern().isEmpty()) {
                throw new IllegalArgumentException("add_weighted_adapter: adapter '" + a + "' has rank_pattern/alpha_pattern, "
                        + "which the combined adapter cannot represent");
            }
            configs.add(c);
        }
        int newRank;
        switch (combinationType) {
            case "linear" -> {
                if (configs.stream().map(LoraConfig::r).distinct().count() != 1) {
                    throw new IllegalArgumentException("All adapters must have the same r value when using combination_type "
                            + "linear; got " + configs.stream().map(LoraConfig::r).toList());
                }
                newRank = configs.get(0).r();
            }
            case "cat" -> newRank = configs.stream().mapToInt(LoraConfig::r).sum();
            default -> throw new IllegalArgumentException("combination_type '" + combinationType
                    + "' is not supported (supported: linear, cat)");
        }
        TargetModules union;
        if (configs.stream().allMatch(c -> !c.targetModules().isRegex())) {
            Set<String> names = new LinkedHashSet<>();
            configs.forEach(c -> names.addAll(c.targetModules().names()));
            union = TargetModules.of(names.toArray(String[]::new));
        } else if (configs.stream().allMatch(c -> c.targetModules().isRegex())) {
            union = TargetModules.regex(String.join("|", configs.stream().map(c -> "(" + c.targetModules().regex() + ")").toList()));
        } else {
            throw new IllegalArgumentException("all adapter configs should follow the same target modules type. Combining "
                    + "adapters with `target_modules` type being a mix of list/set and string is not supported.");
        }
        injectAdapter(name, configs.get(0).toBuilder().r(newRank).loraAlpha(newRank).targetModules(union).build());
        for (io.peft4j.tuners.TunerLayer t : tunerLayers().values()) {
            if (t instanceof LoraLayer layer && layer.adapterNames().contains(name)) {
                combineInto(layer, adapters, weights, name, combinationType);
            }
        }
    }

    private static void combineInto(LoraLayer layer, List<String> adapters, List<Double> weights, String name,
                                    String combinationType) {
        List<ai.djl.ndarray.NDArray> as = new ArrayList<>();
        List<ai.djl.ndarray.NDArray> bs = new ArrayList<>();
        try (io.peft4j.nn.NoGrad ng = io.peft4j.nn.NoGrad.enter();
             ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
            scope.suppressNotUsedWarning();
            for (int i = 0; i < adapters.size(); i++) {
                String a = adapters.get(i);
                if (!layer.adapterNames().contains(a)) {
                    continue;
                }
                double ws = weights.get(i) * layer.scaling(a);
                if (combinationType.equals("cat")) {
                    as.add(layer.loraA(a).data());
                    bs.add(layer.loraB(a).data().mul((float) ws));
                } else {
                    float f = (float) Math.sqrt(ws);
                    as.add(layer.loraA(a).data().mul(f));
                    bs.add(layer.loraB(a).data().mul(f));
                }
            }
            if (as.isEmpty()) {
                throw new IllegalStateException("No matching LoRAs found for the combined adapter '" + name + "'");
            }
            ai.djl.ndarray.NDArray newA;
            ai.djl.ndarray.NDArray newB;
            if (combinationType.equals("cat")) {
                newA = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(as), 0);
                newB = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(bs), 1);
                // A module targeted by only some adapters keeps zero rows/columns for the others (peft zero-fills).
                newA = padTo(newA, layer.loraA(name).shape(), 0);
                newB = padTo(newB, layer.loraB(name).shape(), 1);
            } else {
                newA = as.get(0);
                newB = bs.get(0);
                for (int i = 1; i < as.size(); i++) {
                    newA = newA.add(as.get(i));
                    newB = newB.add(bs.get(i));
                }
            }
            layer.loraA(name).setData(newA);
            layer.loraB(name).setData(newB);
        }
        layer.loraA(name).requiresGrad(false);
        layer.loraB(name).requiresGrad(false);
        layer.setScaling(name, 1.0);
    }

    /**
     * peft's {@code subtract_mutated_init}: turns a trained adapter whose initialisation moved part of the base
     * weight into the adapter (PiSSA, OLoRA, LoRA-GA, CorDA) into a plain LoRA adapter for the original weights.
     * With {@code W = W_res + s·B0·A0} and the trained model {@code W_res + s·B·A}, the update relative to {@code W}
     * is {@code s·(B·A − B0·A0) = s·[B | −B0]·[A ; A0]}: rank {@code 2r} at the same scaling (the caller doubles
     * {@code r} and {@code lora_alpha}).
     *
     * <p>Both maps use the saved keys. {@code lora_A}/{@code lora_embedding_A} become {@code cat([A, A0], 0)},
     * {@code lora_B}/{@code lora_embedding_B} become {@code cat([B, −B0], 1)}, a {@code lora_bias} becomes
     * {@code b − b0}; other tensors (modules_to_save copies, trained biases) hold absolute values and are kept as
     * they are, where peft drops them. New arrays are attached to {@code into}.
     *
     * @param initialSource names the initial tensors in error messages (their file)
     */
    public static LinkedHashMap<String, NDArray> subtractMutatedInit(Map<String, NDArray> trained,
                                                                     Map<String, NDArray> initial,
                                                                     String initialSource, NDManager into) {
        List<String> extra = new ArrayList<>();
        for (String key : initial.keySet()) {
            if (isLoraFactor(key) && !trained.containsKey(key)) {
                extra.add(key);
            }
        }
        if (!extra.isEmpty()) {
            throw new IllegalArgumentException(initialSource + ": the initial adapter has tensors the trained adapter "
                    + "lacks: " + head(extra) + " (was it saved from a model with other target_modules?)");
        }
        LinkedHashMap<String, NDArray> out = new LinkedHashMap<>();
        try (NoGrad ignored = NoGrad.enter()) {
            for (Map.Entry<String, NDArray> e : trained.entrySet()) {
                String key = e.getKey();
                NDArray now = e.getValue();
                if (key.endsWith(".lora_magnitude_vector") || key.endsWith(".lora_magnitude_vector.weight")) {
                    throw new IllegalArgumentException("cannot convert a DoRA adapter to plain LoRA (" + key
                            + "): its magnitude depends on the base weight the conversion restores");
                }
                if (!isLoraFactor(key) && !key.endsWith(".lora_B.bias")) {
                    out.put(key, now);
                    continue;
                }
                NDArray init = initial.get(key);
                if (init == null) {
                    throw new IllegalArgumentException(initialSource + ": no tensor '" + key + "' in the initial "
                            + "adapter (it must be saved from the same model and config before training)");
                }
                if (!init.getShape().equals(now.getShape())) {
                    throw new IllegalArgumentException(initialSource + ": tensor '" + key + "' has shape "
                            + init.getShape() + " but the trained adapter's is " + now.getShape()
                            + " (initial adapter saved with another r or from another model?)");
                }
                NDArray converted;
                if (key.endsWith(".lora_B.bias")) {
                    converted = now.sub(init);
                } else if (key.endsWith(".lora_A.weight") || key.endsWith(".lora_embedding_A")) {
                    converted = now.concat(init, 0);
                } else {
                    try (NDArray negated = init.neg()) {
                        converted = now.concat(negated, 1);
                    }
                }
                converted.attach(into);
                out.put(key, converted);
            }
        }
        return out;
    }

    private static boolean isLoraFactor(String key) {
        return key.endsWith(".lora_A.weight") || key.endsWith(".lora_B.weight")
                || key.endsWith(".lora_embedding_A") || key.endsWith(".lora_embedding_B");
    }

    private static String head(List<String> keys) {
        return keys.size() <= 5 ? keys.toString() : keys.subList(0, 5) + " ... (" + keys.size() + " in total)";
    }

    private static ai.djl.ndarray.NDArray padTo(ai.djl.ndarray.NDArray x, ai.djl.ndarray.types.Shape shape, int axis) {
        long have = x.getShape().get(axis);
        long want = shape.get(axis);
        if (have == want) {
            return x;
        }
        long[] pad = shape.getShape().clone();
        pad[axis] = want - have;
        return x.concat(x.getManager().zeros(new ai.djl.ndarray.types.Shape(pad)), axis);
    }
}
