package io.peft4j.model;

import io.peft4j.config.PeftConfig;
import io.peft4j.nn.Module;
import io.peft4j.tuners.prompt.PromptTokenizer;

/**
 * {@code PeftModel} for sequence classification ({@code task_type="SEQ_CLS"}). As in peft, the heads named
 * {@code classifier} and {@code score} are appended to {@code modules_to_save}, so the freshly initialised
 * head trains with the adapter and is saved in {@code adapter_model.safetensors}.
 */
public class PeftModelForSequenceClassification extends PeftModel {
    protected PeftModelForSequenceClassification(Module model, PeftConfig config, String adapterName) {
        super(model, config, adapterName);
    }

    protected PeftModelForSequenceClassification(Module model, PeftConfig config, String adapterName, PromptTokenizer tokenizer) {
        super(model, config, adapterName, tokenizer);
    }
}
