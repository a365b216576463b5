package io.peft4j.hub;

import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.PromptTuningInit;
import io.peft4j.config.TaskType;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.model.PreTrainedModel;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Prompt tuning's TEXT initialisation through the model's tokenizer.json (found via tokenizer_name_or_path). */
class PromptTextInitTest {
    static Path tinyGpt2() {
        Path shared = HfModelsTest.shared();
        Path dir = shared == null ? null : shared.resolve("fixtures/tiny-gpt2");
        Assumptions.assumeTrue(dir != null && Files.exists(dir.resolve("tokenizer.json")),
                "../shared/fixtures/tiny-gpt2 not found; skipping");
        return dir;
    }

    @Test
    void textInitCopiesTheWordEmbeddingsOfTheTokenisedText() throws Exception {
        Path dir = tinyGpt2();
        PromptTuningConfig cfg = PromptTuningConfig.builder().numVirtualTokens(5).taskType(TaskType.CAUSAL_LM)
                .promptTuningInit(PromptTuningInit.TEXT).promptTuningInitText("Hello world")
                .tokenizerNameOrPath(dir.toString()).build();
        try (PreTrainedModel model = HfModels.fromPretrained(dir)) {
            float[] wte = model.getParameter("transformer.wte.weight").data().toFloatArray();
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            float[] prompt = peft.getParameter("prompt_encoder.default.embedding.weight").data().toFloatArray();
            // GPT-2's vocabulary: "Hello" = 15496, " world" = 995 (GPT-2 adds no special tokens), repeated to 5.
            int[] ids = {15496, 995, 15496, 995, 15496};
            assertThat(prompt).hasSize(5 * 2);
            for (int i = 0; i < 5; i++) {
                for (int c = 0; c < 2; c++) {
                    assertThat(prompt[i * 2 + c]).isEqualTo(wte[ids[i] * 2 + c]);
                }
            }
        }
    }

    @Test
    void aTokenizerPathWithoutTokenizerJsonFailsClearly(@TempDir Path tmp) throws Exception {
        Path dir = tinyGpt2();
        PromptTuningConfig cfg = PromptTuningConfig.builder().numVirtualTokens(5).taskType(TaskType.CAUSAL_LM)
                .promptTuningInit(PromptTuningInit.TEXT).promptTuningInitText("Hello")
                .tokenizerNameOrPath(tmp.toString()).build();
        try (PreTrainedModel model = HfModels.fromPretrained(dir)) {
            assertThatThrownBy(() -> PeftModel.getPeftModel(model, cfg))
                    .hasMessageContaining("tokenizer_name_or_path '" + tmp + "' was not found")
                    .hasMessageContaining("TEXT");
        }
    }
}
