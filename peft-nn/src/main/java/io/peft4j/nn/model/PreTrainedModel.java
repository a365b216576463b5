package io.peft4j.nn.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A model that tuners and {@code PeftModel} program against: a module tree with Hugging Face names, its
 * {@code config.json}, and the native memory it owns.
 */
public abstract class PreTrainedModel extends Module implements AutoCloseable {
    private final NDManager manager;
    private ModelConfig config;
    private String nameOrPath;

    protected PreTrainedModel(NDManager manager, ModelConfig config) {
        this.manager = manager;
        this.config = config;
    }

    /** Runs the model. Call inside an {@code NDScope}; see {@code io.peft4j.nn.train}. */
    public abstract ModelOutput forward(ModelInput input);

    /** The input embedding module ({@code model.embed_tokens} for LLaMA). */
    public abstract Module inputEmbeddings();

    /** Dotted path of the output head ({@code lm_head}) or null; PEFT's {@code all-linear} skips it. */
    public abstract String outputEmbeddingsPath();

    /**
     * Whether {@link #forward} accepts {@code pastKeyValues} (per-layer key/value prefixes), which prefix tuning
     * needs. True unless a model says otherwise (DistilBERT, as in transformers).
     */
    public boolean supportsPastKeyValues() {
        return true;
    }

    public ModelConfig config() {
        return config;
    }

    /**
     * Initialises the named parameters as this model's constructor would (transformers' {@code _init_weights}):
     * called by the checkpoint loader for what a checkpoint did not provide when the model was built with deferred
     * initialisation ({@link io.peft4j.nn.Init}). A model without an initialisation rule refuses, naming them.
     */
    public void initMissingWeights(java.util.List<String> names) {
        throw new IllegalStateException(getClass().getSimpleName() + ": the checkpoint did not provide " + names
                + " and this model has no initialisation rule for them");
    }

    /** Replaces the config (e.g. after a merge unties embeddings). */
    public void setConfig(ModelConfig config) {
        this.config = config;
    }

    /** Where the model was loaded from, as {@code name_or_path} in transformers; may be null. */
    public String nameOrPath() {
        return nameOrPath;
    }

    public void setNameOrPath(String nameOrPath) {
        this.nameOrPath = nameOrPath;
    }

    /** Whether the output head's weight is the very same {@link Param} as the input embedding's. */
    public boolean isTied() {
        String head = outputEmbeddingsPath();
        if (head == null) {
            return false;
        }
        Param out = getSubmodule(head).paramOrNull("weight");
        return out != null && out == inputEmbeddings().paramOrNull("weight");
    }

    /**
     * As {@link Module#stateDict()}, but a tensor shared under several names appears once (first name), as
     * transformers saves tied weights: {@code lm_head.weight} is omitted while it is tied.
     */
    @Override
    public LinkedHashMap<String, NDArray> stateDict() {
        LinkedHashMap<String, NDArray> out = new LinkedHashMap<>();
        Set<Param> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        namedStateEntries().forEach((k, p) -> {
            if (seen.add(p)) {
                out.put(k, p.data());
            }
        });
        return out;
    }

    /** Also accepts a state dict without the output head's weight while the head is tied. */
    @Override
    public LoadResult loadStateDict(Map<String, NDArray> state, boolean strict) {
        String headKey = outputEmbeddingsPath() + ".weight";
        if (!isTied() || state.containsKey(headKey)) {
            return super.loadStateDict(state, strict);
        }
        LoadResult r = super.loadStateDict(state, false);
        List<String> missing = new ArrayList<>(r.missingKeys());
        missing.remove(headKey);
        if (strict && (!missing.isEmpty() || !r.unexpectedKeys().isEmpty())) {
            throw new IllegalArgumentException("state dict does not match the model: missing keys " + missing
                    + ", unexpected keys " + r.unexpectedKeys());
        }
        return new LoadResult(missing, r.unexpectedKeys());
    }

    /** The manager that owns every parameter of this model. */
    public NDManager manager() {
        return manager;
    }

    @Override
    public void close() {
        manager.close();
    }
}
