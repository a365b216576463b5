package io.peft4j.tuners.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.PromptTuningInit;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.layers.Embedding;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.Random;
import java.util.ServiceLoader;

/**
 * Prompt tuning, peft's {@code PromptEmbedding}: {@code embedding} is an {@code Embedding(num_virtual_tokens *
 * num_transformer_submodules, token_dim)} whose rows are prepended to the input embeddings. Initialisation as
 * peft (only when not built for inference): RANDOM keeps {@code nn.Embedding}'s N(0, 1); SAMPLE_VOCAB copies the
 * word embeddings of uniformly drawn token ids; TEXT copies the word embeddings of the tokenised
 * {@code prompt_tuning_init_text}, cut or repeated to the number of virtual tokens.
 */
public final class PromptEmbedding extends Module implements PromptLearningEncoder {
    private final long numTokens;
    private final long tokenDim;
    private final boolean inferenceOnly;

    /**
     * @param config a config whose {@code token_dim} and {@code num_transformer_submodules} are resolved
     * @param wordEmbeddings the base model's input embedding (read for SAMPLE_VOCAB and TEXT, never kept)
     * @param tokenizer for TEXT; null to look one up by {@code tokenizer_name_or_path} ({@link PromptTokenizer.Provider})
     * @param random the generator for SAMPLE_VOCAB's token ids; null for a fresh one
     */
    public PromptEmbedding(NDManager manager, PromptTuningConfig config, Embedding wordEmbeddings,
                           PromptTokenizer tokenizer, Random random) {
        this.numTokens = PromptLearning.totalVirtualTokens(config);
        this.tokenDim = PromptLearning.require(config.tokenDim(), "token_dim");
        this.inferenceOnly = config.inferenceMode();
        Embedding emb = registerModule("embedding", new Embedding(manager, numTokens, tokenDim));
        if (inferenceOnly || config.promptTuningInit() == PromptTuningInit.RANDOM) {
            return;
        }
        long[] ids = config.promptTuningInit() == PromptTuningInit.SAMPLE_VOCAB
                ? sampleVocab(wordEmbeddings.numEmbeddings(), random)
                : textIds(config, tokenizer);
        if (wordEmbeddings.embeddingDim() != tokenDim) {
            throw new IllegalArgumentException("token_dim " + tokenDim + " differs from the model's embedding size "
                    + wordEmbeddings.embeddingDim());
        }
        for (long id : ids) {
            if (id < 0 || id >= wordEmbeddings.numEmbeddings()) {
                throw new IllegalArgumentException("prompt_tuning_init_text gives token id " + id + ", outside the "
                        + "model's vocabulary of " + wordEmbeddings.numEmbeddings());
            }
        }
        try (NoGrad ng = NoGrad.enter()) {
            NDArray idx = manager.create(ids);
            NDArray looked = wordEmbeddings.forward(idx);
            NDArray rows = looked.toType(DataType.FLOAT32, true);
            idx.close();
            looked.close();
            emb.weight().setData(rows);
        }
    }

    private long[] sampleVocab(long vocab, Random random) {
        Random r = random != null ? random : new Random();
        long[] ids = new long[(int) numTokens];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = (long) (r.nextDouble() * vocab);
        }
        return ids;
    }

    private long[] textIds(PromptTuningConfig config, PromptTokenizer given) {
        String text = config.promptTuningInitText();
        if (text == null) {
            throw new IllegalArgumentException("prompt_tuning_init is TEXT but prompt_tuning_init_text is not set");
        }
        long[] ids;
        if (given != null) {
            ids = given.encode(text);
        } else {
            try (PromptTokenizer t = openTokenizer(config.tokenizerNameOrPath(), config.tokenizerKwargs())) {
                ids = t.encode(text);
            }
        }
        if (ids.length == 0) {
            throw new IllegalArgumentException("prompt_tuning_init_text '" + text + "' tokenises to no tokens");
        }
        return fitToLength(ids, (int) numTokens);
    }

    /** peft's rule: cut to {@code n}, or repeat {@code ceil(n / len)} times and cut. */
    static long[] fitToLength(long[] ids, int n) {
        long[] out = new long[n];
        for (int i = 0; i < n; i++) {
            out[i] = ids[i % ids.length];
        }
        return out;
    }

    /** The first registered provider that finds {@code nameOrPath}; a clear error when none does. */
    static PromptTokenizer openTokenizer(String nameOrPath, Map<String, Object> kwargs) {
        if (nameOrPath == null) {
            throw new IllegalArgumentException("prompt_tuning_init is TEXT but no tokenizer is given: set "
                    + "tokenizer_name_or_path (a directory with tokenizer.json, or a repo id in the local Hugging Face "
                    + "cache) or pass a PromptTokenizer");
        }
        boolean anyProvider = false;
        for (PromptTokenizer.Provider p : ServiceLoader.load(PromptTokenizer.Provider.class)) {
            anyProvider = true;
            try {
                PromptTokenizer t = p.open(nameOrPath, kwargs);
                if (t != null) {
                    return t;
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot load the tokenizer '" + nameOrPath + "' for "
                        + "prompt_tuning_init TEXT: " + e.getMessage(), e);
            }
        }
        throw new IllegalArgumentException(anyProvider
                ? "tokenizer_name_or_path '" + nameOrPath + "' was not found (no tokenizer.json there nor in the "
                        + "local Hugging Face cache); prompt_tuning_init TEXT needs the model's tokenizer"
                : "prompt_tuning_init is TEXT but no tokenizer loader is available: add peft-hub to the class path "
                        + "or pass a PromptTokenizer");
    }

    @Override
    public Embedding embedding() {
        return (Embedding) child("embedding");
    }

    @Override
    public NDArray encode(NDArray indices) {
        return embedding().forward(indices);
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
        return numTokens + " virtual tokens, token_dim=" + tokenDim;
    }
}
