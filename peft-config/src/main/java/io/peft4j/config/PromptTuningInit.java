package io.peft4j.config;

/** How prompt-tuning virtual token embeddings are initialised. */
public enum PromptTuningInit {
    TEXT, SAMPLE_VOCAB, RANDOM
}
