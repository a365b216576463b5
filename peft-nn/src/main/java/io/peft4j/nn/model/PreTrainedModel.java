package io.peft4j.nn.model;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;

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

    public ModelConfig config() {
        return config;
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

    /** The manager that owns every parameter of this model. */
    public NDManager manager() {
        return manager;
    }

    @Override
    public void close() {
        manager.close();
    }
}
