package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Collection;

import static org.assertj.core.api.Assertions.assertThat;

/** Gradients flow through Conv1D, the causal mask, dropout, the tied head and the loss. */
class Gpt2TrainingTest {
    @Test
    void adamWStepsReduceTheLossWithFiniteGradients() {
        Torch.manualSeed(3);
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(20).nPositions(32).nEmbd(32).nLayer(2).nHead(4).build();
        try (NDManager nd = Torch.newManager()) {
            Gpt2LMHeadModel model = new Gpt2LMHeadModel(nd, cfg);
            model.train(true); // dropout 0.1 active
            long[] tokens = new long[32];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = 1 + (i % 5);
            }
            long[] mask = new long[32];
            Arrays.fill(mask, 1);
            mask[16] = 0; // row 1 left-padded by one
            NDArray ids = nd.create(tokens, new Shape(2, 16));
            NDArray attn = nd.create(mask, new Shape(2, 16));
            Collection<Param> params = model.namedParameters().values();
            float[] wteBefore = model.getParameter("transformer.wte.weight").data().toFloatArray();
            AdamW opt = AdamW.builder().lr(0.01f).build();
            float first = 0;
            float last = 0;
            for (int step = 0; step < 20; step++) {
                TrainStep.Result r = TrainStep.run(() -> model.forward(ModelInput.builder().inputIds(ids)
                        .attentionMask(attn).labels(ids).build()).loss(), opt, params);
                assertThat(r.gradNorm()).isPositive().isFinite();
                if (step == 0) {
                    first = r.loss();
                }
                last = r.loss();
            }
            System.out.printf("gpt2 training loss %.4f -> %.4f%n", first, last);
            assertThat(last).isLessThan(first * 0.7f);
            // The tied embedding/head tensor was trained (one Param under two names).
            assertThat(model.getParameter("lm_head.weight").data().toFloatArray())
                    .isNotEqualTo(wteBefore)
                    .containsExactly(model.getParameter("transformer.wte.weight").data().toFloatArray());
        }
    }

    @Test
    void sequenceClassificationTrainsThroughThePooledToken() {
        Torch.manualSeed(5);
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(20).nPositions(16).nEmbd(32).nLayer(2).nHead(4)
                .padTokenId(0).numLabels(3).build();
        try (NDManager nd = Torch.newManager()) {
            Gpt2ForSequenceClassification model = new Gpt2ForSequenceClassification(nd, cfg);
            model.train(true);
            // Right-padded rows: the label depends on the last real token, which pooling must find.
            long[] tokens = {
                4, 5, 1, 0, 0, 0,
                7, 2, 9, 3, 2, 0,
                6, 6, 3, 0, 0, 0,
                8, 5, 1, 4, 4, 1};
            long[] mask = new long[tokens.length];
            for (int i = 0; i < tokens.length; i++) {
                mask[i] = tokens[i] == 0 ? 0 : 1;
            }
            NDArray ids = nd.create(tokens, new Shape(4, 6));
            NDArray attn = nd.create(mask, new Shape(4, 6));
            NDArray labels = nd.create(new long[] {1, 2, 0, 1}, new Shape(4));
            AdamW opt = AdamW.builder().lr(0.01f).build();
            Collection<Param> params = model.namedParameters().values();
            float first = 0;
            float last = 0;
            for (int step = 0; step < 20; step++) {
                TrainStep.Result r = TrainStep.run(() -> model.forward(ModelInput.builder().inputIds(ids)
                        .attentionMask(attn).labels(labels).build()).loss(), opt, params);
                assertThat(r.gradNorm()).isPositive().isFinite();
                if (step == 0) {
                    first = r.loss();
                }
                last = r.loss();
            }
            System.out.printf("gpt2 seq-cls training loss %.4f -> %.4f%n", first, last);
            assertThat(last).isLessThan(first * 0.5f);
        }
    }
}
