package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.Sequential;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.layers.Tanh;

/**
 * Prefix tuning, peft's {@code PrefixEncoder}: one row of {@code num_layers * 2 * token_dim} per virtual token,
 * the keys and values of every layer. Without {@code prefix_projection} (or built for inference) that row is
 * {@code embedding.weight} itself; with it, {@code embedding} is {@code (num_virtual_tokens, token_dim)} followed
 * by {@code transform = Sequential(Linear(token_dim, encoder_hidden_size), Tanh, Linear(encoder_hidden_size,
 * num_layers * 2 * token_dim))}. peft saves the output, so a loaded adapter never has the projection.
 */
public final class PrefixEncoder extends Module implements PromptLearningEncoder {
    private final boolean projection;
    private final long numTokens;
    private final long outputDim;
    private final boolean inferenceOnly;

    /** @param config a config whose {@code token_dim}, {@code num_layers} and {@code encoder_hidden_size} are resolved */
    public PrefixEncoder(NDManager manager, PrefixTuningConfig config) {
        if (config.initWeights() != null) {
            throw new IllegalArgumentException("init_weights='" + config.initWeights() + "' is a field of newer "
                    + "peft versions; peft4j follows peft 0.13.2, which initialises the prefix randomly (leave it null)");
        }
        long tokenDim = PromptLearning.require(config.tokenDim(), "token_dim");
        long layers = PromptLearning.require(config.numLayers(), "num_layers");
        this.numTokens = PromptLearning.require(config.numVirtualTokens(), "num_virtual_tokens");
        this.outputDim = layers * 2 * tokenDim;
        this.inferenceOnly = config.inferenceMode();
        this.projection = config.prefixProjection() && !inferenceOnly;
        if (projection) {
            long hidden = PromptLearning.require(config.encoderHiddenSize(), "encoder_hidden_size");
            registerModule("embedding", new Embedding(manager, numTokens, tokenDim));
            registerModule("transform", new Sequential(new Linear(manager, tokenDim, hidden, true), new Tanh(),
                    new Linear(manager, hidden, outputDim, true)));
        } else {
            registerModule("embedding", new Embedding(manager, numTokens, outputDim));
        }
    }

    /** Whether the projection MLP is present (prefix_projection while training). */
    public boolean hasProjection() {
        return projection;
    }

    @Override
    public Embedding embedding() {
        return (Embedding) child("embedding");
    }

    @Override
    public NDArray encode(NDArray indices) {
        NDArray x = embedding().forward(indices);
        return projection ? call("transform", x) : x;
    }

    @Override
    public NDArray forward(NDArray indices) {
        return encode(indices);
    }

    @Override
    public boolean inferenceOnly() {
        return inferenceOnly;
    }

    @Override
    public long numTokens() {
        return numTokens;
    }

    @Override
    public long outputDim() {
        return outputDim;
    }

    @Override
    public String extraRepr() {
        return numTokens + " virtual tokens, " + outputDim + " per token" + (projection ? ", projection" : "");
    }
}
