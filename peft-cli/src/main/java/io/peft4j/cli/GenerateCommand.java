package io.peft4j.cli;

import io.peft4j.hub.HfModels;
import io.peft4j.hub.HfTokenizer;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.GenerationResult;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "generate",
        description = "Generate text with a causal LM (optionally with an adapter): greedy, or sampled with "
                + "temperature / top-k / top-p. Defaults come from the model's generation_config.json.")
final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory (or cached repo id)")
    String model;

    @Option(names = "--adapter", description = "adapter directory (adapter_config.json + adapter_model.safetensors)")
    Path adapter;

    @Option(names = "--merge", description = "merge the adapter into the weights before generating")
    boolean merge;

    @Option(names = "--prompt", required = true, paramLabel = "TEXT",
            description = "prompt text; repeat for a batch (left-padded)")
    List<String> prompts;

    @Option(names = "--tokenizer", paramLabel = "PATH",
            description = "tokenizer.json or its directory (default: the model directory)")
    Path tokenizer;

    @Option(names = "--max-new-tokens", paramLabel = "N",
            description = "tokens to generate per prompt (default: generation_config.json's max_new_tokens, else "
                    + GenerationConfig.DEFAULT_MAX_NEW_TOKENS + ")")
    Integer maxNewTokens;

    @Option(names = "--do-sample", description = "sample instead of greedy decoding")
    boolean doSample;

    @Option(names = "--greedy", description = "greedy decoding even if generation_config.json says do_sample")
    boolean greedy;

    @Option(names = "--temperature", paramLabel = "X", description = "sampling temperature (> 0; default 1.0)")
    Double temperature;

    @Option(names = "--top-k", paramLabel = "K",
            description = "sample from the K most likely tokens (0 = all; default 50)")
    Integer topK;

    @Option(names = "--top-p", paramLabel = "P",
            description = "nucleus sampling threshold in [0, 1] (default 1.0 = off)")
    Double topP;

    @Option(names = "--seed", defaultValue = "42", description = "sampling seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--no-cache", description = "re-run the whole sequence every step instead of using the KV cache")
    boolean noCache;

    @Override
    public Integer call() throws Exception {
        checkArguments();
        Path modelDir = HfModels.resolve(model);
        GenerationConfig config = generationConfig(modelDir);
        List<long[]> ids = new ArrayList<>();
        try (HfTokenizer tok = HfTokenizer.load(tokenizerFile(modelDir))) {
            for (int i = 0; i < prompts.size(); i++) {
                long[] p = tok.encode(prompts.get(i));
                if (p.length == 0) {
                    if (config.bosTokenId() == null) {
                        throw new IllegalArgumentException("prompt " + (i + 1) + " is empty after tokenization "
                                + "and the model has no bos_token_id to start from");
                    }
                    p = new long[] {config.bosTokenId()};
                }
                ids.add(p);
            }
            try (PreTrainedModel base = HfModels.fromPretrained(model)) {
                checkVocabulary(base, ids, config);
                GenerationResult result;
                long t0 = System.nanoTime();
                if (adapter == null) {
                    result = Generation.generate(base, ids, config);
                } else {
                    PeftModel peft = PeftModel.fromPretrained(base, adapter);
                    if (merge) {
                        result = Generation.generate((PreTrainedModel) peft.mergeAndUnload(), ids, config);
                    } else {
                        result = peft.generate(ids, config);
                    }
                }
                double seconds = (System.nanoTime() - t0) / 1e9;
                for (int i = 0; i < result.batchSize(); i++) {
                    if (i > 0) {
                        System.out.println();
                    }
                    System.out.println(completionText(tok, prompts.get(i), result.prompt(i), result.newTokens(i)));
                }
                System.out.flush();
                System.err.printf(Locale.ROOT, "peft generate: %d new tokens in %.2f s (%.1f tokens/s, %s%s)%n",
                        result.totalNewTokens(), seconds, result.totalNewTokens() / Math.max(seconds, 1e-9),
                        config.doSample() ? "sampled" : "greedy", config.useCache() ? "" : ", no cache");
            }
        }
        return 0;
    }

    private void checkArguments() {
        if (merge && adapter == null) {
            throw new IllegalArgumentException("--merge needs --adapter");
        }
        if (doSample && greedy) {
            throw new IllegalArgumentException("--do-sample and --greedy exclude each other");
        }
        if (maxNewTokens != null && maxNewTokens < 1) {
            throw new IllegalArgumentException("--max-new-tokens must be >= 1, got " + maxNewTokens);
        }
        if (temperature != null && !(temperature > 0 && Double.isFinite(temperature))) {
            throw new IllegalArgumentException("--temperature must be > 0, got " + temperature);
        }
        if (topK != null && topK < 0) {
            throw new IllegalArgumentException("--top-k must be >= 0, got " + topK);
        }
        if (topP != null && !(topP >= 0 && topP <= 1)) {
            throw new IllegalArgumentException("--top-p must be in [0, 1], got " + topP);
        }
    }

    /** generation_config.json (or config.json's token ids) with the options on top. */
    GenerationConfig generationConfig(Path modelDir) throws IOException {
        GenerationConfig fromFile = GenerationConfig.fromPretrained(modelDir);
        boolean sample = doSample || (!greedy && fromFile.doSample());
        if (!sample && (temperature != null || topK != null || topP != null)) {
            throw new IllegalArgumentException("--temperature, --top-k and --top-p only apply when sampling; add "
                    + "--do-sample");
        }
        GenerationConfig.Builder b = fromFile.toBuilder().doSample(sample).seed(seed).useCache(!noCache);
        if (maxNewTokens != null) {
            b.maxNewTokens(maxNewTokens);
        }
        if (temperature != null) {
            b.temperature(temperature);
        }
        if (topK != null) {
            b.topK(topK);
        }
        if (topP != null) {
            b.topP(topP);
        }
        return b.build();
    }

    private Path tokenizerFile(Path modelDir) throws IOException {
        if (tokenizer != null) {
            Path f = Files.isDirectory(tokenizer) ? tokenizer.resolve("tokenizer.json") : tokenizer;
            if (!Files.isRegularFile(f)) {
                throw new IOException("--tokenizer " + tokenizer + ": no tokenizer.json there");
            }
            return f;
        }
        Path f = modelDir.resolve("tokenizer.json");
        if (!Files.isRegularFile(f)) {
            throw new IOException(modelDir + " has no tokenizer.json, which generate needs to encode the prompts; "
                    + "pass --tokenizer PATH");
        }
        return f;
    }

    private static void checkVocabulary(PreTrainedModel base, List<long[]> ids, GenerationConfig config) {
        int vocab = base.config().getInt("vocab_size", Integer.MAX_VALUE);
        for (int i = 0; i < ids.size(); i++) {
            for (long id : ids.get(i)) {
                if (id >= vocab) {
                    throw new IllegalArgumentException("prompt " + (i + 1) + " has token id " + id + ", outside the "
                            + "model's vocabulary (vocab_size " + vocab + "): the tokenizer does not belong to this "
                            + "model");
                }
            }
        }
        long pad = config.effectivePadTokenId();
        if (ids.size() > 1 && pad >= vocab) {
            throw new IllegalArgumentException("pad id " + pad + " is outside the model's vocabulary (vocab_size "
                    + vocab + ")");
        }
    }

    /**
     * The prompt as typed followed by the generated text, as transformers' text-generation pipeline does it:
     * the decoded prompt is cut from the front of the decoded whole, so the tokenizer's spacing is kept.
     */
    static String completionText(HfTokenizer tok, String prompt, long[] promptIds, long[] newIds) {
        long[] all = Arrays.copyOf(promptIds, promptIds.length + newIds.length);
        System.arraycopy(newIds, 0, all, promptIds.length, newIds.length);
        String full = tok.decode(all);
        String decodedPrompt = tok.decode(promptIds);
        return full.startsWith(decodedPrompt) ? prompt + full.substring(decodedPrompt.length()) : full;
    }
}
