package io.peft4j.nn.data;

/** Text to token ids, as the data readers need it (implemented over HF's {@code tokenizer.json} in peft-hub). */
public interface Tokenizer {
    /**
     * @param addSpecialTokens add what the tokenizer's post-processor adds (LLaMA's BOS, BERT's [CLS]/[SEP])
     */
    long[] encode(String text, boolean addSpecialTokens);
}
