package io.peft4j.hub;

import io.peft4j.tuners.prompt.PromptTokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;

/**
 * Prompt tuning's TEXT initialisation from {@code tokenizer_name_or_path}: a {@code tokenizer.json} file, a directory
 * holding one, or a repo id in the local Hugging Face cache (never downloaded). The text is encoded with the
 * tokenizer's special tokens, as transformers' {@code tokenizer(text)["input_ids"]}. Registered as a
 * {@link java.util.ServiceLoader} provider, so {@code PeftModel.getPeftModel} finds it when peft-hub is present.
 */
public final class HfPromptTokenizerProvider implements PromptTokenizer.Provider {
    @Override
    public PromptTokenizer open(String nameOrPath, Map<String, Object> kwargs) throws IOException {
        Path direct = Paths.get(nameOrPath);
        Path source;
        if (Files.isRegularFile(direct) || (Files.isDirectory(direct) && HfTokenizer.present(direct))) {
            source = direct;
        } else if (Files.isDirectory(direct)) {
            return null;
        } else {
            try {
                source = HfModels.resolveTokenizer(nameOrPath);
            } catch (IOException notFound) {
                return null;
            }
        }
        HfTokenizer tok = HfTokenizer.load(source);
        return new PromptTokenizer() {
            @Override
            public long[] encode(String text) {
                return tok.encodeWithSpecialTokens(text);
            }

            @Override
            public void close() {
                tok.close();
            }
        };
    }
}
