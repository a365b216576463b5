package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.transformers.CausalLm;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * GPT-2 with a language-model head, as transformers 4.45's {@code GPT2LMHeadModel}: the {@link Gpt2Model}
 * trunk at {@code transformer} and {@code lm_head} (no bias), tied to {@code transformer.wte} unless
 * {@code tie_word_embeddings} is false. Call {@link #forward(ModelInput)} inside an {@code NDScope}.
 */
public class Gpt2LMHeadModel extends PreTrainedModel {
    private final Gpt2Config cfg;

    /** A randomly initialised model (transformers' GPT-2 init). */
    public Gpt2LMHeadModel(NDManager manager, Gpt2Config config) {
        super(manager, config.modelConfig());
        this.cfg = config;
        Gpt2Model transformer = registerModule("transformer", new Gpt2Model(manager, config));
        Linear lmHead = registerModule("lm_head", new Linear(manager, config.nEmbd(), config.vocabSize(), false));
        Gpt2Model.initWeights(this, manager, config);
        if (config.tieWordEmbeddings()) {
            // Same Param object under both names: one tensor, counted once, updated together.
            Param own = lmHead.param("weight");
            lmHead.setParam("weight", transformer.child("wte").param("weight"));
            own.data().close();
        }
    }

    /**
     * Loads {@code config.json} and the safetensors weights (single file or sharded index) of a transformers
     * model directory, in either GPT-2 key layout (see {@link #loadWeights}). The returned model is in eval
     * mode and owns a new manager: close it.
     */
    public static Gpt2LMHeadModel fromPretrained(Path dir) throws IOException {
        return Checkpoints.fromPretrained(dir, Gpt2Config::of, Gpt2LMHeadModel::new, Gpt2LMHeadModel::loadWeights);
    }

    /**
     * Loads a safetensors checkpoint by name: keys with or without the {@code transformer.} prefix; legacy
     * {@code attn.bias}/{@code attn.masked_bias} buffers skipped; {@code lm_head.weight} optional (and
     * ignored) while tied. Any other missing or unexpected key, or a wrong shape, fails naming file and key.
     */
    public void loadWeights(Path dirOrFile) throws IOException {
        boolean tied = isTied();
        Gpt2Model.loadCheckpoint(this, dirOrFile, manager(), name -> tied && name.equals("lm_head.weight"),
                tied ? Set.of("lm_head.weight") : Set.of());
    }

    @Override
    public void initMissingWeights(List<String> names) {
        Gpt2Model.initMissing(this, names, manager(), cfg);
    }

    public Gpt2Config gpt2Config() {
        return cfg;
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("transformer.wte");
    }

    @Override
    public String outputEmbeddingsPath() {
        return "lm_head";
    }

    @Override
    public ModelOutput forward(ModelInput input) {
        Gpt2Model transformer = (Gpt2Model) child("transformer");
        Gpt2Model.Output out = transformer.forward(input);
        NDArray logits = call("lm_head", out.lastHidden());
        NDArray loss = input.labels() == null ? null : CausalLm.loss(logits, input.labels());
        return new ModelOutput(logits, loss, out.hiddenStates(), out.presentKeyValues());
    }

}
