package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.transformers.Generation;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static io.peft4j.transformers.llama.LlamaTestSupport.inputIds;
import static io.peft4j.transformers.llama.LlamaTestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;

class LlamaGenerationTest {
    @Test
    void greedyWithCacheEqualsArgmaxOfFullRecompute() throws Exception {
        long[] prompt = Arrays.copyOf(inputIds()[0], 5);
        try (LlamaForCausalLM model = LlamaForCausalLM.fromPretrained(modelDir());
             NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter()) {
            long[] cached = Generation.greedy(model, prompt, 8, null);
            assertThat(cached).hasSize(13).startsWith(prompt);
            long[] seq = prompt;
            for (int i = 0; i < 8; i++) {
                try (NDScope s = new NDScope()) {
                    NDArray logits = model.forward(ModelInput.of(nd.create(seq, new Shape(1, seq.length)))).logits();
                    long next = logits.get(0).get(seq.length - 1).argMax().getLong();
                    seq = Arrays.copyOf(seq, seq.length + 1);
                    seq[seq.length - 1] = next;
                }
            }
            assertThat(cached).containsExactly(seq);
            long[] stopped = Generation.greedy(model, prompt, 8, cached[5]);
            assertThat(stopped).containsExactly(Arrays.copyOf(cached, 6));
        }
    }
}
