package io.peft4j.tuners.ia3;

import io.peft4j.config.IA3Config;
import io.peft4j.config.TargetModules;
import io.peft4j.nn.Module;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.TargetMatcher;
import io.peft4j.tuners.TargetModuleDefaults;

import java.util.List;
import java.util.regex.Pattern;

/** The IA³ injector: wraps every targeted Linear / Conv1D in an {@link IA3Linear}. */
public final class IA3Model extends BaseTuner<IA3Config> {

    public IA3Model(Module model, IA3Config config, String adapterName) {
        super(model);
        injectAdapter(adapterName, config);
    }

    @Override
    public String prefix() {
        return "ia3_";
    }

    /** Default target and feed-forward modules by {@code model_type}, as peft's IA³ tables. */
    @Override
    protected IA3Config prepareAdapterConfig(IA3Config config, Module model) {
        String type = model instanceof PreTrainedModel p ? p.config().modelType() : null;
        IA3Config.Builder b = config.toBuilder();
        if (config.targetModules() == null) {
            List<String> t = type == null ? null : TargetModuleDefaults.IA3.get(type);
            if (t == null) {
                throw new IllegalArgumentException("Please specify `target_modules` in `peft_config`"
                        + (type == null ? "" : " (no default IA3 targets are known for model_type '" + type + "')"));
            }
            b.targetModules(TargetModules.of(t.toArray(String[]::new)));
        }
        if (config.feedforwardModules() == null) {
            List<String> ff = type == null ? null : TargetModuleDefaults.IA3_FEEDFORWARD.get(type);
            if (ff == null) {
                throw new IllegalArgumentException("Please specify `feedforward_modules` in `peft_config`"
                        + (type == null ? "" : " (no default IA3 feed-forward modules are known for model_type '"
                        + type + "')"));
            }
            b.feedforwardModules(TargetModules.of(ff.toArray(String[]::new)));
        }
        return b.build();
    }

    @Override
    protected TargetMatcher.Match matchTarget(IA3Config c, String key) {
        return TargetMatcher.check(c.targetModules(), c.excludeModules(), c.modulesToSave(), null, null, key);
    }

    @Override
    protected List<String> modulesToSave(IA3Config config) {
        return config.modulesToSave();
    }

    @Override
    protected TargetModules targetModules(IA3Config config) {
        return config.targetModules();
    }

    /** peft: a regex must match the whole key; a list entry is a plain string suffix of it. */
    private static boolean isFeedforward(IA3Config c, String key) {
        TargetModules ff = c.feedforwardModules();
        if (ff.isRegex()) {
            return Pattern.compile(ff.regex()).matcher(key).matches();
        }
        return ff.names().stream().anyMatch(key::endsWith);
    }

    @Override
    protected void createAndReplace(IA3Config c, String adapterName, Module target, String targetName,
                                    Module parent, String currentKey) {
        if (target instanceof IA3Linear existing) {
            existing.updateLayer(adapterName, c.initIa3Weights());
            return;
        }
        if (!IA3Linear.supports(target)) {
            throw new IllegalArgumentException("Target module " + currentKey + " (" + target.getClass().getSimpleName()
                    + ") is not supported. Currently, only `Linear` and GPT-2 `Conv1D` are supported by IA3.");
        }
        boolean fanInFanOut = fanInFanOut(adapterName, target, IA3Config::fanInFanOut,
                (cfg, v) -> cfg.toBuilder().fanInFanOut(v).build());
        IA3Linear layer = new IA3Linear(target, isFeedforward(c, currentKey), fanInFanOut);
        layer.updateLayer(adapterName, c.initIa3Weights());
        parent.setChild(targetName, layer);
    }
}
