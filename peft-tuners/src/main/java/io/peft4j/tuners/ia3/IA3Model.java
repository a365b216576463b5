package io.peft4j.tuners.ia3;

import io.peft4j.config.IA3Config;
import io.peft4j.config.TargetModules;
import io.peft4j.nn.Module;
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
        IA3Config.Builder b = config.toBuilder();
        if (config.targetModules() == null) {
            b.targetModules(TargetModuleDefaults.lookup(TargetModuleDefaults.IA3, model, "target_modules",
                    "IA3 targets"));
        }
        if (config.feedforwardModules() == null) {
            b.feedforwardModules(TargetModuleDefaults.lookup(TargetModuleDefaults.IA3_FEEDFORWARD, model,
                    "feedforward_modules", "IA3 feed-forward modules"));
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
