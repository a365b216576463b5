package io.peft4j.tuners.lora;

import io.peft4j.config.LoraConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.TargetMatcher;
import io.peft4j.tuners.TargetModuleDefaults;
import io.peft4j.tuners.TunerLayer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The LoRA injector: wraps every targeted Linear / Conv1D in a {@link LoraLinear}, an Embedding in a {@link LoraEmbedding}. */
public final class LoraModel extends BaseTuner<LoraConfig> {
    private static final Logger LOG = LoggerFactory.getLogger(LoraModel.class);
    private final Set<String> warnedLinearFanInFanOut = new java.util.HashSet<>();

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
        LoraConfig c = config;
        if (c.targetModules() == null) {
            String type = model instanceof PreTrainedModel p ? p.config().modelType() : null;
            List<String> defaults = type == null ? null : TargetModuleDefaults.LORA.get(type);
            if (defaults == null) {
                throw new IllegalArgumentException("Please specify `target_modules` in `peft_config`"
                        + (type == null ? "" : " (no default targets are known for model_type '" + type + "')"));
            }
            c = c.toBuilder().targetModules(TargetModules.of(defaults.toArray(String[]::new))).build();
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
        return TargetMatcher.check(c.targetModules(), c.excludeModules(), c.modulesToSave(),
                c.layersToTransform(), c.layersPattern(), key);
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
    protected String describeTargets(LoraConfig config) {
        TargetModules t = config.targetModules();
        return t.isRegex() ? t.regex() : new ArrayList<>(t.names()).toString();
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
            boolean fanInFanOut = c.fanInFanOut();
            if (target instanceof Linear && fanInFanOut) {
                if (warnedLinearFanInFanOut.add(adapterName)) {
                    LOG.warn("fan_in_fan_out is set to True but the target module is `Linear`. Setting "
                            + "fan_in_fan_out to False.");
                }
                fanInFanOut = false;
            } else if (target instanceof Conv1D && !fanInFanOut) {
                // Once per adapter (Python shows a warning once per call site): the stored config now says true.
                if (!peftConfig().get(adapterName).fanInFanOut()) {
                    LOG.warn("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting "
                            + "fan_in_fan_out to True.");
                    putConfig(adapterName, peftConfig().get(adapterName).toBuilder().fanInFanOut(true).build());
                }
                fanInFanOut = true;
            }
            layer = new LoraLinear(target, fanInFanOut);
            parent.setChild(targetName, layer);
        } else {
            throw new IllegalArgumentException("Target module " + currentKey + " (" + target.getClass().getSimpleName()
                    + ") is not supported. Currently, only `Linear`, `Embedding` and GPT-2 `Conv1D` are supported.");
        }
        layer.updateLayer(adapterName, r, alpha.doubleValue(), c.loraDropout(), c.initLoraWeights(),
                c.useRslora(), c.loraBias(), c.useDora());
    }
}
