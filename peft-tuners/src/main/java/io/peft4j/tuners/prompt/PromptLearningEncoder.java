package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.layers.Embedding;

/**
 * What the three prompt-learning encoders share (peft's {@code PromptEmbedding}, {@code PromptEncoder},
 * {@code PrefixEncoder}): an {@code embedding} of the virtual tokens and a forward from virtual-token ids to
 * their encoded vectors. An encoder built for inference holds only the embedding, and its weight already is the
 * encoded output (what peft saves as {@code prompt_embeddings}).
 */
public interface PromptLearningEncoder {
    /** The virtual-token embedding ({@code embedding.weight}). */
    Embedding embedding();

    /** Virtual-token ids ({@code [batch, n]} or {@code [n]}) to their encoded vectors ({@code [..., out]}). */
    NDArray encode(NDArray indices);

    /** True when built for inference: the embedding's weight is the encoder's output, no network follows. */
    boolean inferenceOnly();

    /** Rows of the encoded output: {@code num_virtual_tokens * num_transformer_submodules} (prefix: tokens only). */
    long numTokens();

    /** Width of one encoded row ({@code token_dim}, or {@code num_layers * 2 * token_dim} for prefix tuning). */
    long outputDim();
}
