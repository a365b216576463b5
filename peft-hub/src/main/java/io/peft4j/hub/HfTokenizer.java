package io.peft4j.hub;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** A Hugging Face {@code tokenizer.json} read from disk through DJL's bundled native tokenizers library. */
public final class HfTokenizer implements AutoCloseable, io.peft4j.nn.data.Tokenizer {
    private final HuggingFaceTokenizer tokenizer;

    private HfTokenizer(HuggingFaceTokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    /** Loads {@code dir/tokenizer.json} (or the file itself); no special tokens are added. */
    public static HfTokenizer load(Path dirOrFile) throws IOException {
        Path file = Files.isDirectory(dirOrFile) ? dirOrFile.resolve("tokenizer.json") : dirOrFile;
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + ": no tokenizer.json");
        }
        System.setProperty("ai.djl.offline", "true");
        return new HfTokenizer(HuggingFaceTokenizer.newInstance(file,
                Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false")));
    }

    /** True when {@code dir} holds a {@code tokenizer.json}. */
    public static boolean present(Path dir) {
        return Files.isRegularFile(dir.resolve("tokenizer.json"));
    }

    public long[] encode(String text) {
        Encoding e = tokenizer.encode(text);
        return e.getIds();
    }

    /**
     * Ids with the special tokens the tokenizer's post-processor adds (BERT's [CLS]/[SEP], LLaMA's BOS), as
     * transformers' {@code tokenizer(text)["input_ids"]} returns them by default.
     */
    public long[] encodeWithSpecialTokens(String text) {
        return tokenizer.encode(text, true, false).getIds();
    }

    @Override
    public long[] encode(String text, boolean addSpecialTokens) {
        return addSpecialTokens ? encodeWithSpecialTokens(text) : encode(text);
    }

    public String decode(long[] ids) {
        return tokenizer.decode(ids);
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
