package io.peft4j.tuners.adalora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.tuners.TargetModuleDefaults;
import io.peft4j.tuners.TunerLayer;
import io.peft4j.tuners.lora.AbstractLoraModel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The AdaLoRA injector (peft's {@code AdaLoraModel}): wraps every targeted Linear / Conv1D in an {@link SVDLinear} of
 * rank {@code init_r}. It adds the orthogonal regulariser to a loss the model returns ({@link #afterForward}) and
 * drives the rank budget: the training loop calls {@link #updateAndAllocate} after each optimizer update, before
 * the gradients are cleared. Only one adapter may be trainable.
 */
public final class AdaLoraModel extends AbstractLoraModel<AdaLoraConfig> {
    private static final Logger LOG = LoggerFactory.getLogger(AdaLoraModel.class);

    private RankAllocator allocator;

    public AdaLoraModel(Module model, AdaLoraConfig config, String adapterName) {
        super(model);
        injectAdapter(adapterName, config);
        if (trainableAdapterName() != null) {
            allocator = newAllocator(trainableAdapterName());
        }
    }

    @Override
    protected Map<String, List<String>> defaultTargetModules() {
        return TargetModuleDefaults.ADALORA;
    }

    @Override
    protected AdaLoraConfig withTargetModules(AdaLoraConfig config, TargetModules targets) {
        return config.toBuilder().targetModules(targets).build();
    }

    @Override
    protected AdaLoraConfig prepareAdapterConfig(AdaLoraConfig config, Module model) {
        if (config.r() != 8) {
            LOG.warn("Note that `r` is not used in AdaLora and will be ignored. If you intended to set the initial "
                    + "rank, use `init_r` instead.");
        }
        return super.prepareAdapterConfig(config, model);
    }

    @Override
    protected void checkNewAdapterConfig(AdaLoraConfig config) {
        super.checkNewAdapterConfig(config);
        long trainable = peftConfig().values().stream().filter(c -> !c.inferenceMode()).count()
                + (config.inferenceMode() ? 0 : 1);
        if (trainable > 1) {
            throw new IllegalArgumentException("AdaLoraModel supports only 1 trainable adapter. When using multiple "
                    + "adapters, set inference_mode to True for all adapters except the one you want to train.");
        }
    }

    @Override
    protected void createAndReplace(AdaLoraConfig c, String adapterName, Module target, String targetName,
                                    Module parent, String currentKey) {
        SVDLinear layer;
        if (target instanceof SVDLinear existing) {
            layer = existing;
        } else if (target instanceof TunerLayer) {
            throw new IllegalArgumentException("Module " + currentKey + " already holds a "
                    + target.getClass().getSimpleName() + "; AdaLoRA cannot be mixed with other methods");
        } else if (SVDLinear.supports(target)) {
            boolean fanInFanOut = fanInFanOut(adapterName, target, AdaLoraConfig::fanInFanOut,
                    (cfg, v) -> cfg.toBuilder().fanInFanOut(v).build());
            layer = new SVDLinear(target, fanInFanOut);
            parent.setChild(targetName, layer);
        } else {
            throw new IllegalArgumentException("Target module " + currentKey + " (" + target.getClass().getSimpleName()
                    + ") is not supported. Currently, only `Linear` and GPT-2 `Conv1D` are supported by AdaLoRA.");
        }
        layer.updateLayer(adapterName, c.initR(), c.loraAlphaValue(), c.loraDropout(), c.initLoraWeights());
    }

    /** The adapter that is not in inference mode (there is at most one), or null. */
    public String trainableAdapterName() {
        for (Map.Entry<String, AdaLoraConfig> e : peftConfig().entrySet()) {
            if (!e.getValue().inferenceMode()) {
                return e.getKey();
            }
        }
        return null;
    }

    private RankAllocator newAllocator(String adapter) {
        NDManager m = tunerLayers().values().iterator().next().baseLayer().param("weight").data().getManager();
        return new RankAllocator(model(), peftConfig().get(adapter), adapter, m);
    }

    /** The rank allocator of the trainable adapter. */
    public RankAllocator rankAllocator() {
        String name = trainableAdapterName();
        if (name == null) {
            throw new IllegalStateException("AdaLoRA: no trainable adapter (every adapter is in inference mode), so "
                    + "there is no rank budget to allocate");
        }
        if (allocator == null || !allocator.adapter().equals(name)) {
            if (allocator != null) {
                allocator.close();
            }
            allocator = newAllocator(name);
        }
        return allocator;
    }

    /**
     * peft's {@code update_and_allocate}: call once per training step after the optimizer update and before the
     * gradients are cleared (e.g. as {@code TrainStep.run}'s {@code afterUpdate}). While
     * {@code step < total_step - tfinal} it updates the importance scores and, on the budget schedule, masks the
     * least important singular values and stores the kept ranks as the config's {@code rank_pattern}; at
     * {@code step == total_step - tfinal} the final budget is fixed; afterwards the stored pattern is re-applied.
     */
    public void updateAndAllocate(int globalStep) {
        RankAllocator ra = rankAllocator();
        String name = ra.adapter();
        AdaLoraConfig c = peftConfig().get(name);
        int end = RankAllocator.requireTotalStep(c) - c.tfinal();
        if (globalStep < end) {
            Map<String, List<Boolean>> pattern = ra.updateAndAllocate(globalStep, c, false);
            if (pattern != null && !pattern.isEmpty()) {
                putConfig(name, c.toBuilder().rankPattern(pattern).build());
            }
        } else if (globalStep == end) {
            putConfig(name, c.toBuilder().rankPattern(ra.updateAndAllocate(globalStep, c, true)).build());
            ra.resetIpt();
        } else {
            ra.maskUsingRankPattern(c.rankPattern());
        }
    }

    /**
     * Adds {@code orth_reg_weight · mean ‖P - I‖_F} to a loss the model returned, with {@code P = A Aᵀ} for every
     * {@code lora_A} and {@code P = Bᵀ B} for every {@code lora_B} whose name contains the trainable adapter's name
     * (peft selects by name, trainable or not). peft raises when {@code orth_reg_weight} is 0; here 0 adds nothing.
     */
    @Override
    public ModelOutput afterForward(ModelOutput output) {
        String name = trainableAdapterName();
        if (output.loss() == null || name == null) {
            return output;
        }
        double weight = peftConfig().get(name).orthRegWeight();
        if (weight <= 0) {
            return output;
        }
        NDArray sum = null;
        int count = 0;
        for (Map.Entry<String, Param> e : model().namedParameters().entrySet()) {
            String n = e.getKey();
            boolean isA = n.contains("lora_A");
            if (!(isA || n.contains("lora_B")) || !n.contains(name)) {
                continue;
            }
            NDArray p = e.getValue().data();
            NDArray cov = isA ? p.matMul(p.transpose()) : p.transpose().matMul(p);
            long size = cov.getShape().get(0);
            NDArray eye = cov.getManager().eye((int) size);
            NDArray norm = cov.sub(eye).norm();
            sum = sum == null ? norm : sum.add(norm);
            count++;
        }
        if (count == 0) {
            return output;
        }
        NDArray reg = F.mul(F.div(sum, count), (float) weight);
        return new ModelOutput(output.logits(), output.loss().add(reg), output.hiddenStates(), output.pastKeyValues());
    }

    /**
     * peft's {@code resize_modules_by_rank_pattern}, run when an adapter with a {@code rank_pattern} is loaded: every
     * layer gets as many ranks as its mask keeps, so the cut tensors peft saved fit.
     */
    @Override
    public void prepareToLoad(String adapterName) {
        AdaLoraConfig c = peftConfig().get(adapterName);
        if (c == null || c.rankPattern() == null) {
            return;
        }
        for (Map.Entry<String, List<Boolean>> e : c.rankPattern().entrySet()) {
            patternLayer(patternPath(e.getKey(), adapterName), e.getKey()).resize(adapterName, e.getValue(),
                    c.loraAlphaValue(), c.loraDropout(), c.initLoraWeights());
        }
    }

    /**
     * The module path a rank-pattern key ({@code <path>.lora_E} or {@code <path>.lora_E.<adapter>}) names; like peft,
     * one or two segments are dropped depending on whether the adapter name occurs anywhere in the key.
     */
    private static String patternPath(String key, String adapterName) {
        String[] parts = key.split("\\.");
        int drop = key.contains(adapterName) ? 2 : 1;
        return String.join(".", java.util.Arrays.copyOf(parts, Math.max(0, parts.length - drop)));
    }

    private SVDLinear patternLayer(String path, String key) {
        if (!(model().namedModules().get(path) instanceof SVDLinear layer)) {
            throw new IllegalArgumentException("rank_pattern key '" + key + "' does not name an AdaLoRA layer of this "
                    + "model (looked for module '" + path + "')");
        }
        return layer;
    }

    /** Saved {@code rank_pattern} keys lose the adapter name, as peft writes them. */
    @Override
    public AdaLoraConfig configToSave(String adapterName, AdaLoraConfig config) {
        Map<String, List<Boolean>> pattern = config.rankPattern();
        if (pattern == null) {
            return config;
        }
        Map<String, List<Boolean>> renamed = new LinkedHashMap<>();
        pattern.forEach((k, v) -> renamed.put(k.replace("." + adapterName, ""), v));
        return config.toBuilder().rankPattern(renamed).build();
    }

    /**
     * Without a {@code rank_pattern} the adapter's tensors; with one, the ranks it masks are cut out of
     * {@code lora_E}/{@code lora_A} (rows) and {@code lora_B} (columns), as peft's
     * {@code resize_state_dict_by_rank_pattern} saves them.
     */
    @Override
    public LinkedHashMap<String, Param> tensorsToSave(String adapterName, String pathPrefix, List<NDArray> computed) {
        LinkedHashMap<String, Param> out = adapterStateDict(adapterName, pathPrefix);
        AdaLoraConfig c = peftConfig().get(adapterName);
        if (c == null || c.rankPattern() == null) {
            return out;
        }
        for (Map.Entry<String, List<Boolean>> e : c.rankPattern().entrySet()) {
            List<Boolean> keep = e.getValue();
            long rank = keep.stream().filter(b -> b).count();
            String path = patternPath(e.getKey(), adapterName);
            patternLayer(path, e.getKey());
            for (String container : List.of("lora_E", "lora_A", "lora_B")) {
                String key = pathPrefix + "model." + path + "." + container;
                Param p = out.get(key);
                int axis = container.equals("lora_B") ? 1 : 0;
                if (p == null || p.shape().get(axis) == rank) {
                    continue;
                }
                NDArray cut = SVDLinear.keepRanks(p.data(), keep, axis);
                computed.add(cut);
                out.put(key, new Param(cut, false));
            }
        }
        return out;
    }
}
