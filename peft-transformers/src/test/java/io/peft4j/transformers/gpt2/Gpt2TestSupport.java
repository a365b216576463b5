package io.peft4j.transformers.gpt2;

import io.peft4j.transformers.ReferenceData;

import java.nio.file.Path;

final class Gpt2TestSupport extends ReferenceData {
    private Gpt2TestSupport() {}

    /** The tiny random GPT-2 saved by transformers 4.45 (n_embd 64, 4 heads, 2 layers, vocab 256). */
    static Path modelDir() {
        return resource("models/gpt2");
    }
}
