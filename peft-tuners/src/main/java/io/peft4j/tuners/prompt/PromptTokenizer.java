package io.peft4j.tuners.prompt;

/**
 * Text to token ids as the model's tokenizer produces them by default (special tokens included, like
 * transformers' {@code tokenizer(text)["input_ids"]}); used by prompt tuning's TEXT initialisation.
 */
public interface PromptTokenizer extends AutoCloseable {
    long[] encode(String text);

    @Override
    default void close() {}

    /**
     * Finds a tokenizer by {@code tokenizer_name_or_path} (a local directory, or a repo id in the local Hugging
     * Face cache). Implementations are found with {@link java.util.ServiceLoader}; {@code peft-hub} provides one
     * for {@code tokenizer.json}.
     */
    interface Provider {
        /** The tokenizer, or null when this provider cannot find {@code nameOrPath}. */
        PromptTokenizer open(String nameOrPath, java.util.Map<String, Object> kwargs) throws java.io.IOException;
    }
}
