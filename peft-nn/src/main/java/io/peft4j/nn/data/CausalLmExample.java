package io.peft4j.nn.data;

/**
 * One causal-LM training row: {@code inputIds} and {@code labels} of the same length, labels {@code -100} where no
 * loss is taken (the prompt of a prompt/completion or instruction row).
 */
public record CausalLmExample(long[] inputIds, long[] labels) {
    public CausalLmExample {
        if (inputIds.length != labels.length) {
            throw new IllegalArgumentException("input_ids and labels differ in length: " + inputIds.length + " vs "
                    + labels.length);
        }
    }

    /** Tokens that carry a loss. */
    public int lossTokens() {
        int n = 0;
        for (long l : labels) {
            n += l == Datasets.IGNORE_INDEX ? 0 : 1;
        }
        return n;
    }
}
