package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.Test;

import java.util.Collection;

import static org.assertj.core.api.Assertions.assertThat;

/** Gradients flow through RoPE, GQA, the mask and the loss; a frozen weight stays bit-identical. */
class LlamaTrainingTest {
    @Test
    void lossDecreasesAndFrozenWeightsDoNotMove() {
        Torch.manualSeed(7);
        LlamaConfig cfg = LlamaConfig.builder().vocabSize(20).hiddenSize(32).intermediateSize(48)
                .numHiddenLayers(2).numAttentionHeads(4).numKeyValueHeads(2).build();
        try (NDManager nd = Torch.newManager()) {
            LlamaForCausalLM model = new LlamaForCausalLM(nd, cfg);
            model.train(true);
            // Everything trains but one tensor, which must come out bit-identical.
            model.getParameter("model.layers.0.mlp.up_proj.weight").requiresGrad(false);
            float[] frozenBefore = model.getParameter("model.layers.0.mlp.up_proj.weight").data().toFloatArray();
            long[] tokens = new long[32];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = 1 + (i % 5);
            }
            long[] mask = new long[32];
            java.util.Arrays.fill(mask, 1);
            mask[0] = 0;
            mask[1] = 0;
            NDArray ids = nd.create(tokens, new Shape(2, 16));
            NDArray attn = nd.create(mask, new Shape(2, 16));
            Collection<Param> params = model.namedParameters().values();
            AdamW opt = AdamW.builder().lr(0.02f).build();
            float first = 0;
            float last = 0;
            for (int step = 0; step < 25; step++) {
                TrainStep.Result r = TrainStep.run(() -> model.forward(ModelInput.builder().inputIds(ids)
                        .attentionMask(attn).labels(ids).build()).loss(), opt, params);
                assertThat(r.gradNorm()).isPositive().isFinite();
                if (step == 0) {
                    first = r.loss();
                }
                last = r.loss();
            }
            System.out.printf("training loss %.4f -> %.4f%n", first, last);
            assertThat(last).isLessThan(first * 0.7f);
            assertThat(model.getParameter("model.layers.0.mlp.up_proj.weight").data().toFloatArray())
                    .containsExactly(frozenBefore);
        }
    }
}
