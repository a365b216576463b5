package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptEncoderReparameterizationType;
import io.peft4j.nn.Module;
import io.peft4j.nn.Sequential;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.LSTM;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.layers.ReLU;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * P-tuning, peft's {@code PromptEncoder}: {@code embedding} {@code (num_virtual_tokens * num_transformer_submodules,
 * token_dim)} reparameterised by
 * <ul>
 *   <li>MLP: {@code mlp_head = Sequential(Linear(token_dim, H), ReLU, Linear(H, H), ReLU, Linear(H, token_dim))}
 *       (exactly three linear layers: {@code encoder_num_layers} is ignored, with a warning, as in peft);</li>
 *   <li>LSTM: {@code lstm_head = LSTM(token_dim, H, encoder_num_layers, dropout=encoder_dropout,
 *       bidirectional, batch_first)} then {@code mlp_head = Sequential(Linear(2H, 2H), ReLU, Linear(2H, token_dim))},</li>
 * </ul>
 * with {@code H = encoder_hidden_size}. Built for inference it has only the embedding, which then holds the
 * already-encoded prompts (what peft saves).
 */
public final class PromptEncoder extends Module implements PromptLearningEncoder {
    private static final Logger LOG = LoggerFactory.getLogger(PromptEncoder.class);
    /** peft's {@code PromptEncoderConfig.encoder_num_layers} default. */
    private static final int DEFAULT_NUM_LAYERS = 2;

    private final PromptEncoderReparameterizationType type;
    private final long numTokens;
    private final long tokenDim;
    private final boolean inferenceOnly;

    /** @param config a config whose {@code token_dim}, {@code encoder_hidden_size} and submodules are resolved */
    public PromptEncoder(NDManager manager, PromptEncoderConfig config) {
        this.type = config.encoderReparameterizationType();
        this.numTokens = PromptLearning.totalVirtualTokens(config);
        this.tokenDim = PromptLearning.require(config.tokenDim(), "token_dim");
        this.inferenceOnly = config.inferenceMode();
        registerModule("embedding", new Embedding(manager, numTokens, tokenDim));
        if (inferenceOnly) {
            return;
        }
        long hidden = PromptLearning.require(config.encoderHiddenSize(), "encoder_hidden_size");
        if (type == PromptEncoderReparameterizationType.LSTM) {
            registerModule("lstm_head", new LSTM(manager, tokenDim, hidden, config.encoderNumLayers(),
                    config.encoderDropout(), true));
            registerModule("mlp_head", new Sequential(new Linear(manager, hidden * 2, hidden * 2, true), new ReLU(),
                    new Linear(manager, hidden * 2, tokenDim, true)));
        } else {
            if (config.encoderNumLayers() != DEFAULT_NUM_LAYERS) {
                LOG.warn("for MLP, the argument `encoder_num_layers` is ignored. Exactly {} MLP layers are used.",
                        DEFAULT_NUM_LAYERS);
            }
            registerModule("mlp_head", new Sequential(new Linear(manager, tokenDim, hidden, true), new ReLU(),
                    new Linear(manager, hidden, hidden, true), new ReLU(), new Linear(manager, hidden, tokenDim, true)));
        }
    }

    public PromptEncoderReparameterizationType reparameterizationType() {
        return type;
    }

    @Override
    public Embedding embedding() {
        return (Embedding) child("embedding");
    }

    /** {@code [batch, n]} ids to {@code [batch, n, token_dim]} (the LSTM reads the n tokens as a sequence). */
    @Override
    public NDArray encode(NDArray indices) {
        if (inferenceOnly) {
            throw new IllegalStateException("this P-tuning encoder was built for inference: its embedding already "
                    + "holds the encoded prompts (use embedding().weight())");
        }
        NDArray x = embedding().forward(indices);
        if (type == PromptEncoderReparameterizationType.LSTM) {
            boolean unbatched = x.getShape().dimension() == 2;
            NDArray seq = child("lstm_head").forward(unbatched ? x.expandDims(0) : x);
            NDArray out = call("mlp_head", seq);
            return unbatched ? out.squeeze(0) : out;
        }
        return call("mlp_head", x);
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
        return tokenDim;
    }

    @Override
    public String extraRepr() {
        return type + ", " + numTokens + " virtual tokens, token_dim=" + tokenDim + (inferenceOnly ? ", inference" : "");
    }
}
