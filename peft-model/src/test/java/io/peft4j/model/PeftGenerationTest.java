package io.peft4j.model;

import ai.djl.ndarray.types.DataType;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.llama.LlamaConfig;
import io.peft4j.transformers.llama.LlamaForCausalLM;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** Generation through a LoRA-adapted LLaMA: adapter active, merged, disabled. */
class PeftGenerationTest {
    static final List<long[]> PROMPTS = List.of(new long[] {5, 17, 42, 3, 8, 60, 11}, new long[] {9, 2, 33});

    static LlamaForCausalLM tinyLlama() {
        // A larger init than transformers' 0.02 gives peaked logits, so the adapter visibly changes the argmax.
        LlamaConfig cfg = LlamaConfig.builder().vocabSize(64).hiddenSize(32).intermediateSize(64).numHiddenLayers(2)
                .numAttentionHeads(4).numKeyValueHeads(2).maxPositionEmbeddings(64).initializerRange(0.2).build();
        LlamaForCausalLM model = new LlamaForCausalLM(Torch.newManager(), cfg);
        model.eval();
        return model;
    }

    static PeftModel withRandomLora(LlamaForCausalLM model) {
        PeftModel peft = PeftModel.getPeftModel(model, LoraConfig.builder().r(4).loraAlpha(8)
                .targetModules("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
                .taskType(TaskType.CAUSAL_LM).build());
        // lora_B starts at zero (a no-op adapter): randomise it.
        for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
            if (e.getKey().contains("lora_B")) {
                Param p = e.getValue();
                p.setData(model.manager().randomNormal(0f, 0.3f, p.shape(), DataType.FLOAT32));
            }
        }
        peft.eval();
        return peft;
    }

    static GenerationConfig greedy() {
        return GenerationConfig.builder().maxNewTokens(10).padTokenId(0L).build();
    }

    @Test
    void activeMergedAndDisabledAdapterGenerate() {
        Torch.manualSeed(21);
        try (LlamaForCausalLM model = tinyLlama()) {
            long[][] base = Generation.generate(model, PROMPTS, greedy()).sequences();
            PeftModel peft = withRandomLora(model);

            long[][] active = peft.generate(PROMPTS, greedy()).sequences();
            assertThat(active).hasDimensions(2, 17);
            assertThat(active).as("the adapter changes the output").isNotEqualTo(base);
            assertThat(peft.generate(PROMPTS, GenerationConfig.builder().maxNewTokens(10).padTokenId(0L)
                    .useCache(false).build()).sequences()).as("uncached").isDeepEqualTo(active);

            try (PeftModel.AdapterScope off = peft.disableAdapter()) {
                assertThat(peft.generate(PROMPTS, greedy()).sequences()).as("disabled").isDeepEqualTo(base);
            }
            assertThat(peft.generate(PROMPTS, greedy()).sequences()).as("re-enabled").isDeepEqualTo(active);

            peft.mergeAdapter();
            assertThat(peft.generate(PROMPTS, greedy()).sequences()).as("merged").isDeepEqualTo(active);
            peft.unmergeAdapter();
            assertThat(peft.generate(PROMPTS, greedy()).sequences()).as("unmerged").isDeepEqualTo(active);

            LlamaForCausalLM unloaded = (LlamaForCausalLM) peft.mergeAndUnload();
            assertThat(Generation.generate(unloaded, PROMPTS, greedy()).sequences()).as("merge_and_unload")
                    .isDeepEqualTo(active);
        }
    }

    @Test
    void singlePromptConvenienceReturnsTheCompletion() {
        Torch.manualSeed(22);
        try (LlamaForCausalLM model = tinyLlama()) {
            PeftModel peft = withRandomLora(model);
            long[] one = peft.generate(PROMPTS.get(1), greedy());
            assertThat(one).hasSize(13).startsWith(PROMPTS.get(1));
            assertThat(one).containsExactly(peft.generate(PROMPTS, greedy()).completion(1));
        }
    }
}
