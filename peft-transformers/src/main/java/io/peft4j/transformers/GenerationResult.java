package io.peft4j.transformers;

import java.util.Arrays;

/**
 * What {@link Generation#generate} produced for a batch of prompts.
 *
 * <p>{@link #sequences()} is transformers' {@code generate()} output: every prompt left-padded to the longest,
 * followed by one column per decoding step; a row that emitted an EOS id is filled with the pad id afterwards.
 * {@link #newTokens(int)} and {@link #completion(int)} give one row without any padding.
 */
public final class GenerationResult {
    private final long[][] sequences;
    private final int[] promptLengths;
    private final int paddedPromptLength;
    private final int[] newTokenCounts;
    private final boolean[] finished;

    GenerationResult(long[][] sequences, int[] promptLengths, int paddedPromptLength, int[] newTokenCounts,
                     boolean[] finished) {
        this.sequences = sequences;
        this.promptLengths = promptLengths;
        this.paddedPromptLength = paddedPromptLength;
        this.newTokenCounts = newTokenCounts;
        this.finished = finished;
    }

    public int batchSize() {
        return sequences.length;
    }

    /** {@code [batch][paddedPromptLength + steps]}: left-padded prompts, then the generated ids (copies). */
    public long[][] sequences() {
        long[][] out = new long[sequences.length][];
        for (int i = 0; i < out.length; i++) {
            out[i] = sequences[i].clone();
        }
        return out;
    }

    /** Length of the longest prompt: where the generated columns of {@link #sequences()} start. */
    public int paddedPromptLength() {
        return paddedPromptLength;
    }

    /** Decoding steps run: the number of generated columns of {@link #sequences()}. */
    public int steps() {
        return sequences.length == 0 ? 0 : sequences[0].length - paddedPromptLength;
    }

    /** Ids row {@code i} generated, its EOS id included, the padding after it not. */
    public long[] newTokens(int i) {
        return Arrays.copyOfRange(sequences[i], paddedPromptLength, paddedPromptLength + newTokenCounts[i]);
    }

    /** Prompt {@code i} (unpadded) followed by {@link #newTokens(int)}. */
    public long[] completion(int i) {
        int start = paddedPromptLength - promptLengths[i];
        return Arrays.copyOfRange(sequences[i], start, paddedPromptLength + newTokenCounts[i]);
    }

    /** The prompt of row {@code i} as given. */
    public long[] prompt(int i) {
        return Arrays.copyOfRange(sequences[i], paddedPromptLength - promptLengths[i], paddedPromptLength);
    }

    /** Whether row {@code i} stopped on an EOS id (rather than on {@code maxNewTokens}). */
    public boolean finished(int i) {
        return finished[i];
    }

    /** Total generated tokens over the batch, EOS ids included and padding excluded. */
    public long totalNewTokens() {
        long n = 0;
        for (int c : newTokenCounts) {
            n += c;
        }
        return n;
    }
}
