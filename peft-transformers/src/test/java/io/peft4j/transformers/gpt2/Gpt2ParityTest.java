package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;

import java.util.List;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;

/** Logits and every hidden state of the tiny HF GPT-2 against transformers 4.45 (outputs/gpt2-base). */
class Gpt2ParityTest {
    @Test
    void logitsAndHiddenStatesMatchTransformers() throws Exception {
        long[][] ids = inputIds();
        try (Gpt2LMHeadModel model = Gpt2LMHeadModel.fromPretrained(modelDir());
             NDManager nd = Torch.newManager();
             SafetensorsFile ref = SafetensorsFile.open(resource("outputs/gpt2-base.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            assertThat(model.isTied()).isTrue();
            NDArray input = nd.create(flat(ids), new Shape(ids.length, ids[0].length));
            ModelOutput out = model.forward(ModelInput.builder().inputIds(input)
                    .attentionMask(nd.ones(input.getShape())).outputHiddenStates(true).build());
            assertThat(out.logits().getShape()).isEqualTo(new Shape(2, 10, 256));
            check("logits", out.logits().toFloatArray(), ref.toFloatArray("logits"));
            List<NDArray> hs = out.hiddenStates();
            assertThat(hs).hasSize(model.gpt2Config().nLayer() + 1);
            for (int i = 0; i < hs.size(); i++) {
                check("hidden_states." + i, hs.get(i).toFloatArray(), ref.toFloatArray("hidden_states." + i));
            }
            // logits + one entry per hidden state: nothing in the reference left unchecked.
            assertThat(ref.names()).hasSize(hs.size() + 1);
        }
    }

    private static void check(String name, float[] actual, float[] ref) {
        assertThat(actual).hasSameSizeAs(ref);
        System.out.printf("gpt2 parity %s: max abs diff %.3g%n", name, maxAbsDiff(actual, ref));
        int bad = firstViolation(actual, ref, 1e-4, 1e-4);
        assertThat(bad).as("%s[%d]: java %s vs hf %s", name, bad, bad < 0 ? 0 : actual[bad], bad < 0 ? 0 : ref[bad])
                .isEqualTo(-1);
    }
}
