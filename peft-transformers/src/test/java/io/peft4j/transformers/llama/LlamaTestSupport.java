package io.peft4j.transformers.llama;

import io.peft4j.transformers.ReferenceData;

import java.nio.file.Path;

final class LlamaTestSupport extends ReferenceData {
    private LlamaTestSupport() {}

    /** The tiny random LLaMA saved by transformers 4.45 (4 heads, 2 KV heads, vocab 256). */
    static Path modelDir() {
        return resource("models/llama");
    }
}
