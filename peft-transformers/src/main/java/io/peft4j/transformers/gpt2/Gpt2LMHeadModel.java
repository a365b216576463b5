package io.peft4j.transformers.gpt2;

import io.peft4j.transformers.CausalLm;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
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
        Gpt2Config config = Gpt2Config.of(ModelConfig.read(dir.resolve("config.json")));
        NDManager manager = Torch.newManager();
        try {
            Gpt2LMHeadModel m = new Gpt2LMHeadModel(manager, config);
            m.loadWeights(dir);
            m.setNameOrPath(dir.toString());
            m.eval();
            return m;
        } catch (IOException | RuntimeException e) {
            manager.close();
            throw e;
        }
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

    public Gpt2Config gpt2Config() {
        return cfg;
    }

    /** Whether {@code lm_head.weight} is currently the very same {@link Param} as {@code transformer.wte}'s. */
    public boolean isTied() {
        Param head = getSubmodule("lm_head").paramOrNull("weight");
        return head != null && head == inputEmbeddings().paramOrNull("weight");
    }

    @Override
    public Module inputEmbeddings() {
        return getSubmodule("transformer.wte");
    }

    @Override
    public String outputEmbeddingsPath() {
        return "lm_head";
    }

    /** As {@link Module#stateDict()}, but {@code lm_head.weight} is omitted while tied, as transformers saves. */
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

    /** Also accepts a state dict without {@code lm_head.weight} while the head is tied. */
    @Override
    public LoadResult loadStateDict(Map<String, NDArray> state, boolean strict) {
        if (!isTied() || state.containsKey("lm_head.weight")) {
            return super.loadStateDict(state, strict);
        }
        LoadResult r = super.loadStateDict(state, false);
        List<String> missing = new ArrayList<>(r.missingKeys());
        missing.remove("lm_head.weight");
        if (strict && (!missing.isEmpty() || !r.unexpectedKeys().isEmpty())) {
            throw new IllegalArgumentException("state dict does not match the model: missing keys " + missing
                    + ", unexpected keys " + r.unexpectedKeys());
        }
        return new LoadResult(missing, r.unexpectedKeys());
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
