package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptEncoderReparameterizationType;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** Training prompt-learning adapters on the reference models: behaviour, not numbers. */
class PromptTrainingTest {
    static final int STEPS = 80;

    /** The loss without dropout and without autograd. */
    static float evalLoss(PeftModel peft, ModelInput input) {
        peft.eval();
        try (io.peft4j.nn.NoGrad ng = io.peft4j.nn.NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return peft.forward(input).loss().getFloat();
        } finally {
            peft.train(true);
        }
    }

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of("llama", PromptTuningConfig.builder().numVirtualTokens(4).taskType(TaskType.CAUSAL_LM).build()),
                Arguments.of("llama", PromptEncoderConfig.builder().numVirtualTokens(4).encoderHiddenSize(32)
                        .taskType(TaskType.CAUSAL_LM).build()),
                Arguments.of("gpt2", PromptEncoderConfig.builder().numVirtualTokens(4).encoderHiddenSize(16)
                        .encoderReparameterizationType(PromptEncoderReparameterizationType.LSTM)
                        .taskType(TaskType.CAUSAL_LM).build()),
                Arguments.of("llama", PrefixTuningConfig.builder().numVirtualTokens(4).taskType(TaskType.CAUSAL_LM).build()),
                Arguments.of("gpt2", PrefixTuningConfig.builder().numVirtualTokens(4).prefixProjection(true)
                        .encoderHiddenSize(32).taskType(TaskType.CAUSAL_LM).build()),
                Arguments.of("bert", PromptTuningConfig.builder().numVirtualTokens(4).taskType(TaskType.SEQ_CLS).build()),
                Arguments.of("bert", PrefixTuningConfig.builder().numVirtualTokens(4).prefixProjection(true)
                        .encoderHiddenSize(32).taskType(TaskType.SEQ_CLS).build()));
    }

    @ParameterizedTest
    @MethodSource("cases")
    void lossDecreasesBaseStaysBitIdenticalAndFrozenWeightsGetNoGradient(String arch, PeftConfig config)
            throws Exception {
        Torch.manualSeed(17);
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model(arch))) {
            Map<Param, float[]> before = new IdentityHashMap<>();
            Map<String, Param> byName = new LinkedHashMap<>(model.namedParameters());
            byName.values().forEach(p -> before.put(p, p.data().toFloatArray()));

            PeftModel peft = PeftModel.getPeftModel(model, config);
            peft.train(true);
            NDManager m = model.manager();
            NDArray ids = m.randomInteger(4, 256, new Shape(4, 12), DataType.INT64);
            NDScope.unregister(ids);
            boolean cls = config.taskType() == TaskType.SEQ_CLS;
            NDArray labels = cls ? m.create(new long[] {1, 1, 1, 0}) : ids;
            NDScope.unregister(labels);
            ModelInput input = ModelInput.builder().inputIds(ids).attentionMask(m.ones(new Shape(4, 12), DataType.INT64))
                    .labels(labels).build();
            List<Param> params = peft.trainableParameters();
            Map<Param, float[]> initial = new IdentityHashMap<>();
            params.forEach(p -> initial.put(p, p.data().toFloatArray()));
            AdamW opt = AdamW.builder().lr(5e-2f).maxGradNorm(1f).build();

            float first = evalLoss(peft, input);
            int live = 0;
            for (int step = 0; step < STEPS; step++) {
                TrainStep.Result r = TrainStep.run(() -> peft.forward(input).loss(), opt, params);
                assertThat(Float.isFinite(r.gradNorm())).isTrue();
                if (step == 10) {
                    live = m.getManagedArrays().size();
                }
            }
            assertThat(m.getManagedArrays().size()).as("flat memory").isEqualTo(live);
            float last = evalLoss(peft, input);
            peft.train(true);
            System.out.printf("prompt training %s %s: eval loss %.4f -> %.4f%n", arch, config.peftType(), first, last);
            assertThat(last).as("%s %s: loss %s -> %s", arch, config.peftType(), first, last).isLessThan(first - 0.05f);

            // The base model's own weights (a SEQ_CLS head's original included) are bit-identical and never got a
            // gradient buffer; only the prompt encoder and the head's adapter copy trained.
            for (Map.Entry<Param, float[]> e : before.entrySet()) {
                Param p = e.getKey();
                assertThat(p.requiresGrad()).isFalse();
                assertThat(JniUtils.getGradient((PtNDArray) p.data())).isNull();
                assertThat(p.data().toFloatArray()).isEqualTo(e.getValue());
            }
            for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
                boolean adapter = e.getKey().startsWith("prompt_encoder.") || e.getKey().contains(".modules_to_save.");
                assertThat(e.getValue().requiresGrad()).as(e.getKey()).isEqualTo(adapter);
                if (!adapter) {
                    assertThat(JniUtils.getGradient((PtNDArray) e.getValue().data())).as(e.getKey()).isNull();
                }
            }
            assertThat(params).isNotEmpty();
            for (Param p : params) {
                assertThat(p.data().toFloatArray()).as("trained: %s", p).isNotEqualTo(initial.get(p));
            }
        }
    }
}
