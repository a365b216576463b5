package io.peft4j.model;

import io.peft4j.config.PeftConfig;
import io.peft4j.nn.Module;
import io.peft4j.tuners.prompt.PromptTokenizer;

/** {@code PeftModel} for causal language models ({@code task_type="CAUSAL_LM"}). */
public class PeftModelForCausalLM extends PeftModel {
    protected PeftModelForCausalLM(Module model, PeftConfig config, String adapterName) {
        super(model, config, adapterName);
    }

    protected PeftModelForCausalLM(Module model, PeftConfig config, String adapterName, PromptTokenizer tokenizer) {
        super(model, config, adapterName, tokenizer);
    }
}
