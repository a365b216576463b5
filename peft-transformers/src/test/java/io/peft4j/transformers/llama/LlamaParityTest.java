package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;

import static io.peft4j.transformers.llama.LlamaTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;

/** Logits and every hidden state of the tiny HF LLaMA (4 heads, 2 KV heads) against transformers 4.45. */
class LlamaParityTest {
    static LlamaForCausalLM model;
    static NDManager nd;

    @BeforeAll
    static void load() throws Exception {
        model = LlamaForCausalLM.fromPretrained(modelDir());
        nd = Torch.newManager();
    }

    @AfterAll
    static void close() {
        model.close();
        nd.close();
    }

    @Test
    void logitsAndHiddenStatesMatchTransformers() throws Exception {
        assertThat(model.llamaConfig().numKeyValueHeads()).isLessThan(model.llamaConfig().numAttentionHeads());
        long[][] ids = inputIds();
        try (SafetensorsFile ref = SafetensorsFile.open(resource("outputs/llama-base.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray input = nd.create(flat(ids), new Shape(ids.length, ids[0].length));
            ModelOutput out = model.forward(ModelInput.builder().inputIds(input)
                    .attentionMask(nd.ones(input.getShape())).outputHiddenStates(true).build());
            check("logits", out.logits().toFloatArray(), ref.toFloatArray("logits"));
            List<NDArray> hs = out.hiddenStates();
            assertThat(hs).hasSize(model.llamaConfig().numHiddenLayers() + 1);
            for (int i = 0; i < hs.size(); i++) {
                check("hidden_states." + i, hs.get(i).toFloatArray(), ref.toFloatArray("hidden_states." + i));
            }
            assertThat(ref.names()).hasSize(hs.size() + 1);
        }
    }

    private static void check(String name, float[] actual, float[] ref) {
        assertThat(actual).hasSameSizeAs(ref);
        System.out.printf("parity %s: max abs diff %.3g%n", name, maxAbsDiff(actual, ref));
        int bad = firstViolation(actual, ref, 1e-4, 1e-4);
        assertThat(bad).as("%s[%d]: java %s vs hf %s", name, bad, bad < 0 ? 0 : actual[bad], bad < 0 ? 0 : ref[bad])
                .isEqualTo(-1);
    }
}
