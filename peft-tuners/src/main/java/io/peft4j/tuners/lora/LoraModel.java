package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.tuners.TunerLayer;
import io.peft4j.tuners.TargetMatcher;
import io.peft4j.tuners.TargetModuleDefaults;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The LoRA injector: wraps every targeted Linear / Conv1D in a {@link LoraLinear}, an Embedding in a {@link LoraEmbedding}. */
public final class LoraModel extends AbstractLoraModel<LoraConfig> {

    public LoraModel(Module model, LoraConfig config, String adapterName) {
        super(model);
        injectAdapter(adapterName, config);
    }

    @Override
    protected Map<String, List<String>> defaultTargetModules() {
        return TargetModuleDefaults.LORA;
    }

    @Override
    protected LoraConfig withTargetModules(LoraConfig config, TargetModules targets) {
        return config.toBuilder().targetModules(targets).build();
    }

    /**
     * {@code config} with what injection resolves (default targets by model type, {@code all-linear}, condensed
     * lists), for work that runs before injection (LoRA-GA's gradient estimate).
     */
    static LoraConfig prepare(LoraConfig config, Module model) {
        TargetModules t = config.targetModules() != null ? config.targetModules()
                : TargetModuleDefaults.lookup(TargetModuleDefaults.LORA, model, "target_modules", "targets");
        return config.toBuilder().targetModules(resolveTargetModules(t, model, config.taskType())).build();
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
            if (LoraLinear.supports(base) && TargetMatcher.check(config.targetModules(), config.excludeModules(), config.modulesToSave(),
                    config.layersToTransform(), config.layersPattern(), key) == TargetMatcher.Match.MATCHED) {
                out.put(key, base);
            }
        }
        return out;
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

    /** {@link #addWeightedAdapter(List, List, String, String, Integer, Double)} without SVD options. */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String name, String combinationType) {
        addWeightedAdapter(adapters, weights, name, combinationType, null, null);
    }

    /**
     * peft's {@code add_weighted_adapter}: a new, inactive, frozen adapter {@code name} with {@code lora_alpha = r}
     * (scaling 1) on the union of the adapters' targets. With a single source adapter the type is {@code linear},
     * as in peft.
     * <ul>
     *   <li>{@code cat}: {@code A = cat(w_i·s_i·A_i)}, {@code B = cat(B_i)}, so {@code ΔW = Σ w_i·ΔW_i} exactly
     *       (rank {@code Σ r_i});</li>
     *   <li>{@code linear}: {@code A = Σ sign(w_i)·√|w_i·s_i|·A_i}, {@code B = Σ √|w_i·s_i|·B_i} (same rank
     *       required; with several adapters this is not {@code Σ w_i·ΔW_i}, exactly as in peft);</li>
     *   <li>{@code svd}: the best rank-{@code svdRank} (default: the largest source rank) approximation of
     *       {@code Σ (w_i·s_i)·ΔW_i}, {@code B = U·S}, {@code A = Vᵀ}, optionally clamped to the {@code svdClamp}
     *       quantile of their values. As in peft 0.13.2 the weight is {@code w_i·s_i} on a {@code ΔW_i} that already
     *       includes {@code s_i}: pass {@code w_i / s_i} to combine {@code Σ w_i·ΔW_i}. The SVD runs on the
     *       factors ({@link LowRankSvd}), never on a dense {@code out × in} matrix.</li>
     * </ul>
     * Combinations peft computes wrongly are refused: rsLoRA (the new adapter would get {@code alpha/√r ≠ 1}),
     * DoRA (magnitudes are not combined), and rank/alpha patterns (they would be copied from the first adapter).
     */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String name, String combinationType,
                                   Integer svdRank, Double svdClamp) {
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
        String type = adapters.size() == 1 ? "linear" : combinationType;
        int newRank;
        switch (type) {
            case "linear" -> {
                if (configs.stream().map(LoraConfig::r).distinct().count() != 1) {
                    throw new IllegalArgumentException("All adapters must have the same r value when using combination_type "
                            + "linear; got " + configs.stream().map(LoraConfig::r).toList());
                }
                newRank = configs.get(0).r();
            }
            case "cat" -> newRank = configs.stream().mapToInt(LoraConfig::r).sum();
            case "svd" -> {
                if (svdRank != null && svdRank <= 0) {
                    throw new IllegalArgumentException("svd_rank must be positive, got " + svdRank);
                }
                newRank = svdRank != null ? svdRank : configs.stream().mapToInt(LoraConfig::r).max().orElseThrow();
            }
            default -> throw new IllegalArgumentException("combination_type '" + combinationType
                    + "' is not supported (supported: svd, linear, cat)");
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
                combineInto(layer, adapters, weights, name, type, newRank, svdClamp);
            }
        }
    }

    private static void combineInto(LoraLayer layer, List<String> adapters, List<Double> weights, String name,
                                    String combinationType, int newRank, Double svdClamp) {
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
                switch (combinationType) {
                    case "cat" -> {
                        as.add(layer.loraA(a).data().mul((float) ws));
                        bs.add(layer.loraB(a).data());
                    }
                    case "svd" -> {
                        // ΔW_i already carries s_i; peft weighs it by w_i·s_i once more.
                        as.add(layer.loraA(a).data());
                        bs.add(layer.loraB(a).data().mul((float) (ws * layer.scaling(a))));
                    }
                    default -> {
                        float f = (float) Math.sqrt(Math.abs(ws));
                        as.add(layer.loraA(a).data().mul(ws < 0 ? -f : f));
                        bs.add(layer.loraB(a).data().mul(f));
                    }
                }
            }
            if (as.isEmpty()) {
                throw new IllegalStateException("No matching LoRAs found for the combined adapter '" + name + "'");
            }
            ai.djl.ndarray.NDArray newA;
            ai.djl.ndarray.NDArray newB;
            if (combinationType.equals("linear")) {
                newA = as.get(0);
                newB = bs.get(0);
                for (int i = 1; i < as.size(); i++) {
                    newA = newA.add(as.get(i));
                    newB = newB.add(bs.get(i));
                }
            } else {
                newA = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(as), 0);
                newB = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(bs), 1);
                if (combinationType.equals("svd")) {
                    int out = (int) newB.getShape().get(0);
                    int in = (int) newA.getShape().get(1);
                    int rank = (int) newA.getShape().get(0);
                    float[][] ab = LowRankSvd.truncated(newB.toFloatArray(), newA.toFloatArray(), out, in, rank, newRank);
                    if (svdClamp != null) {
                        LowRankSvd.clamp(ab[0], ab[1], svdClamp);
                    }
                    newA = LoraInit.array(newA.getManager(), ab[0], newRank, in);
                    newB = LoraInit.array(newB.getManager(), ab[1], out, newRank);
                }
                // A module targeted by only some adapters keeps zero rows/columns for the others (peft zero-fills).
                newA = padTo(newA, layer.loraA(name).shape(), 0);
                newB = padTo(newB, layer.loraB(name).shape(), 1);
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
