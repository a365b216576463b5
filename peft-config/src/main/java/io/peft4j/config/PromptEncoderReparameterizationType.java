package io.peft4j.config;

/** Prompt encoder architecture used by P-tuning. */
public enum PromptEncoderReparameterizationType {
    MLP, LSTM
}
