package io.peft4j.tuners.lora;

import io.peft4j.config.AbstractLoraConfig;
import io.peft4j.config.TargetModules;
import io.peft4j.nn.Module;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.TargetMatcher;
import io.peft4j.tuners.TargetModuleDefaults;

import java.util.List;
import java.util.Map;

/**
 * What LoRA and AdaLoRA injectors share (peft's {@code AdaLoraModel} subclasses {@code LoraModel}): the
 * {@code lora_} prefix, target resolution (model-type defaults, {@code all-linear}, condensing), matching with
 * {@code layers_to_transform}, {@code modules_to_save}, bias modes and the one-adapter-with-bias rule.
 *
 * @param <C> the method's config type
 */
public abstract class AbstractLoraModel<C extends AbstractLoraConfig> extends BaseTuner<C> {

    protected AbstractLoraModel(Module model) {
        super(model);
    }

    /** peft's default {@code target_modules} by {@code model_type} for this method. */
    protected abstract Map<String, List<String>> defaultTargetModules();

    /** A copy of {@code config} with other {@code target_modules}. */
    protected abstract C withTargetModules(C config, TargetModules targets);

    @Override
    public String prefix() {
        return "lora_";
    }

    @Override
    protected C prepareAdapterConfig(C config, Module model) {
        TargetModules t = config.targetModules() != null ? config.targetModules()
                : TargetModuleDefaults.lookup(defaultTargetModules(), model, "target_modules", "targets");
        TargetModules resolved = resolveTargetModules(t, model, config.taskType());
        return resolved.equals(config.targetModules()) ? config : withTargetModules(config, resolved);
    }

    @Override
    protected TargetMatcher.Match matchTarget(C c, String key) {
        return TargetMatcher.check(c.targetModules(), c.excludeModules(), c.modulesToSave(),
                c.layersToTransform(), c.layersPattern(), key);
    }

    /** peft's LoRA rule: at most one adapter may train biases. */
    @Override
    protected void checkNewAdapterConfig(C config) {
        long withBias = peftConfig().values().stream().filter(c -> c.bias() != AbstractLoraConfig.Bias.NONE).count()
                + (config.bias() != AbstractLoraConfig.Bias.NONE ? 1 : 0);
        if (withBias > 1) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " supports only 1 adapter with bias. "
                    + "When using multiple adapters, set bias to 'none' for all adapters.");
        }
    }

    @Override
    protected List<String> modulesToSave(C config) {
        return config.modulesToSave();
    }

    @Override
    protected String biasMode(C config) {
        return config.bias().value();
    }

    @Override
    protected TargetModules targetModules(C config) {
        return config.targetModules();
    }
}
