package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PeftType;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptLearningConfig;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.model.ModelConfig;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** What the prompt-learning methods share: config resolution against the model, encoder creation, prefix layout. */
public final class PromptLearning {
    private PromptLearning() {}

    /**
     * peft's {@code _prepare_prompt_learning_config} plus the {@code num_transformer_submodules} default of
     * {@code _setup_prompt_encoder}: fills {@code num_layers} (from {@code num_hidden_layers}, {@code num_layers} or
     * {@code n_layer}), {@code token_dim} ({@code hidden_size}, {@code n_embd}, {@code d_model}),
     * {@code num_attention_heads} ({@code num_attention_heads}, {@code n_head}, {@code num_heads},
     * {@code encoder_attention_heads}) when null; for prefix tuning on a model with {@code num_key_value_heads}
     * (grouped-query attention) sets {@code token_dim = token_dim / num_attention_heads * num_key_value_heads} and
     * {@code num_attention_heads = num_key_value_heads}; {@code encoder_hidden_size = token_dim} when null; and
     * {@code num_transformer_submodules} = 2 for SEQ_2_SEQ_LM, else 1, when null.
     */
    @SuppressWarnings("unchecked")
    public static <C extends PromptLearningConfig> C prepareConfig(C config, ModelConfig model) {
        if (config.numVirtualTokens() == null) {
            throw new IllegalArgumentException(config.peftType() + ": num_virtual_tokens must be set (a positive "
                    + "number of virtual tokens)");
        }
        ObjectNode json = config.toJsonNode();
        int numLayers = config.numLayers() != null ? config.numLayers()
                : first(model, "num_layers", "num_hidden_layers", "num_layers", "n_layer");
        int tokenDim = config.tokenDim() != null ? config.tokenDim()
                : first(model, "token_dim", "hidden_size", "n_embd", "d_model");
        int heads = config.numAttentionHeads() != null ? config.numAttentionHeads()
                : first(model, "num_attention_heads", "num_attention_heads", "n_head", "num_heads",
                        "encoder_attention_heads");
        if (config.peftType() == PeftType.PREFIX_TUNING && model.has("num_key_value_heads")) {
            int kv = model.getInt("num_key_value_heads");
            tokenDim = tokenDim / heads * kv;
            heads = kv;
        }
        json.put("num_layers", numLayers);
        json.put("token_dim", tokenDim);
        json.put("num_attention_heads", heads);
        boolean hasEncoderHidden = config instanceof PrefixTuningConfig || config instanceof PromptEncoderConfig;
        if (hasEncoderHidden && (!json.has("encoder_hidden_size") || json.get("encoder_hidden_size").isNull())) {
            json.put("encoder_hidden_size", tokenDim);
        }
        if (config.numTransformerSubmodules() == null) {
            json.put("num_transformer_submodules", config.taskType() == TaskType.SEQ_2_SEQ_LM ? 2 : 1);
        }
        return (C) PeftConfig.fromJsonNode(json, config.sourceName());
    }

    private static int first(ModelConfig model, String field, String... keys) {
        for (String k : keys) {
            if (model.has(k)) {
                return model.getInt(k);
            }
        }
        throw new IllegalArgumentException("Please specify `" + field + "` in `peft_config`: the model config ("
                + model.source() + ") has none of " + List.of(keys));
    }

    /**
     * Fails with a clear message when a resolved config cannot work on this model: the prompt width must be the
     * embedding width; a prefix needs one key/value pair per layer with the model's key/value head count and
     * head size.
     */
    public static void checkFitsModel(PromptLearningConfig config, ModelConfig model, Embedding wordEmbeddings) {
        if (config.peftType() != PeftType.PREFIX_TUNING) {
            if (wordEmbeddings != null && config.tokenDim() != wordEmbeddings.embeddingDim()) {
                throw new IllegalArgumentException(config.peftType() + " adapter does not fit this model: its "
                        + "token_dim is " + config.tokenDim() + " but the model's input embeddings have size "
                        + wordEmbeddings.embeddingDim() + " (an adapter trained on another base model?)");
            }
            return;
        }
        Integer layers = firstOrNull(model, "num_hidden_layers", "num_layers", "n_layer");
        Integer hidden = firstOrNull(model, "hidden_size", "n_embd", "d_model");
        Integer heads = firstOrNull(model, "num_attention_heads", "n_head", "num_heads", "encoder_attention_heads");
        if (layers != null && !layers.equals(config.numLayers())) {
            throw new IllegalArgumentException("PREFIX_TUNING adapter does not fit this model: it has key/value "
                    + "prefixes for num_layers=" + config.numLayers() + " but the model has " + layers + " layers");
        }
        if (hidden != null && heads != null) {
            int headDim = model.has("head_dim") ? model.getInt("head_dim") : hidden / heads;
            int kvHeads = model.has("num_key_value_heads") ? model.getInt("num_key_value_heads") : heads;
            if (config.numAttentionHeads() != kvHeads || config.tokenDim() != (long) kvHeads * headDim) {
                throw new IllegalArgumentException("PREFIX_TUNING adapter does not fit this model: its prefixes have "
                        + "num_attention_heads=" + config.numAttentionHeads() + " x "
                        + (config.tokenDim() / Math.max(1, config.numAttentionHeads())) + " (token_dim="
                        + config.tokenDim() + ") but the model's keys and values have " + kvHeads + " heads x "
                        + headDim);
            }
        }
    }

    private static Integer firstOrNull(ModelConfig model, String... keys) {
        for (String k : keys) {
            if (model.has(k)) {
                return model.getInt(k);
            }
        }
        return null;
    }

    /**
     * The encoder of a resolved config, peft's {@code _setup_prompt_encoder}.
     *
     * @param tokenizer prompt tuning's TEXT init; null to look one up by {@code tokenizer_name_or_path}
     * @param random SAMPLE_VOCAB's generator; null for a fresh one
     */
    public static Module createEncoder(NDManager manager, PromptLearningConfig config, Embedding wordEmbeddings,
                                       PromptTokenizer tokenizer, Random random) {
        if (config instanceof PromptTuningConfig c) {
            return new PromptEmbedding(manager, c, wordEmbeddings, tokenizer, random);
        }
        if (config instanceof PromptEncoderConfig c) {
            return new PromptEncoder(manager, c);
        }
        if (config instanceof PrefixTuningConfig c) {
            return new PrefixEncoder(manager, c);
        }
        throw new IllegalArgumentException("unsupported prompt-learning method " + config.peftType());
    }

    /** {@code num_virtual_tokens * num_transformer_submodules} of a resolved config. */
    public static long totalVirtualTokens(PromptLearningConfig config) {
        return (long) require(config.numVirtualTokens(), "num_virtual_tokens")
                * require(config.numTransformerSubmodules(), "num_transformer_submodules");
    }

    static int require(Integer v, String field) {
        if (v == null) {
            throw new IllegalArgumentException(field + " is not resolved; create the adapter through PeftModel, which "
                    + "fills it from the model config");
        }
        return v;
    }

    /**
     * peft's prefix layout: {@code [batch, P, num_layers * 2 * token_dim]} viewed as {@code [batch, P, num_layers * 2,
     * heads, head_dim]}, permuted to {@code [num_layers * 2, batch, heads, P, head_dim]}, layer {@code l} taking
     * entries {@code 2l} (keys) and {@code 2l + 1} (values). Decoder-only and encoder models only
     * ({@code num_transformer_submodules == 1}).
     */
    public static List<NDArray[]> pastKeyValues(NDArray prefix, PrefixTuningConfig config) {
        if (config.numTransformerSubmodules() != null && config.numTransformerSubmodules() != 1) {
            throw new UnsupportedOperationException("prefix tuning with num_transformer_submodules="
                    + config.numTransformerSubmodules() + " (encoder-decoder models) is not supported");
        }
        Shape s = prefix.getShape();
        int layers = config.numLayers();
        int heads = config.numAttentionHeads();
        int headDim = config.tokenDim() / heads;
        NDArray kv = prefix.reshape(s.get(0), s.get(1), layers * 2L, heads, headDim).transpose(2, 0, 3, 1, 4);
        List<NDArray[]> out = new ArrayList<>(layers);
        for (int l = 0; l < layers; l++) {
            out.add(new NDArray[] {kv.get(2L * l), kv.get(2L * l + 1)});
        }
        return out;
    }
}
