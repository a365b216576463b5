package io.peft4j.transformers.gpt2;

import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.GenerationResult;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.inputIds;
import static io.peft4j.transformers.gpt2.Gpt2TestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Generation with the tiny transformers-saved GPT-2. Unlike LLaMA's rotary embeddings, GPT-2's absolute
 * position embeddings make every left-padded row depend on the position ids the generator derives from the mask.
 */
class Gpt2GenerationTest {
    static Gpt2LMHeadModel model;
    static long[][] ids;

    @BeforeAll
    static void load() throws Exception {
        model = Gpt2LMHeadModel.fromPretrained(modelDir());
        ids = inputIds();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    @Test
    void cachedUncachedAndLeftPaddedBatchAgreeWithEachPromptAlone() {
        List<long[]> prompts = List.of(ids[0], Arrays.copyOf(ids[1], 3), Arrays.copyOfRange(ids[0], 2, 8));
        GenerationConfig greedy = GenerationConfig.builder().maxNewTokens(10).padTokenId(0L).build();
        GenerationResult batch = Generation.generate(model, prompts, greedy);
        GenerationResult uncached = Generation.generate(model, prompts,
                GenerationConfig.builder().maxNewTokens(10).padTokenId(0L).useCache(false).build());
        assertThat(uncached.sequences()).isDeepEqualTo(batch.sequences());
        for (int i = 0; i < prompts.size(); i++) {
            GenerationResult alone = Generation.generate(model, List.of(prompts.get(i)), greedy);
            assertThat(batch.completion(i)).as("row " + i).containsExactly(alone.completion(0));
            assertThat(batch.completion(i)).startsWith(prompts.get(i)).hasSize(prompts.get(i).length + 10);
        }
    }
}
