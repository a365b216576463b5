package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.Test;

import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** LoRA training on the reference LLaMA: behaviour, not numbers. */
class LoraTrainingTest {

    @Test
    void trainingLowersLossKeepsFrozenWeightsAndMemoryFlatAndMergeMatches() throws Exception {
        Torch.manualSeed(3);
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            Map<String, float[]> frozen = new LinkedHashMap<>();
            model.namedParameters().forEach((k, p) -> frozen.put(k, p.data().toFloatArray()));

            LoraConfig cfg = LoraConfig.builder().r(8).loraAlpha(16).loraDropout(0.1)
                    .targetModules("q_proj", "v_proj", "down_proj").taskType(TaskType.CAUSAL_LM).build();
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            peft.train(true);
            NDManager m = model.manager();
            NDArray ids = m.randomInteger(4, 256, new Shape(2, 12), DataType.INT64);
            NDScope.unregister(ids);
            List<Param> params = peft.trainableParameters();
            AdamW opt = AdamW.builder().lr(3e-3f).maxGradNorm(1f).build();

            float first = 0;
            float last = 0;
            int liveAfterWarmup = 0;
            for (int step = 0; step < 1000; step++) {
                TrainStep.Result r = TrainStep.run(
                        () -> peft.forward(ModelInput.builder().inputIds(ids).labels(ids).build()).loss(), opt, params);
                if (step == 0) {
                    first = r.loss();
                }
                if (step == 10) {
                    liveAfterWarmup = m.getManagedArrays().size();
                }
                last = r.loss();
            }
            assertThat(last).isLessThan(first - 1.0f);
            assertThat(m.getManagedArrays().size()).isEqualTo(liveAfterWarmup);

            // Every base weight (now under base_layer for wrapped modules) is bit-identical.
            Map<Param, Boolean> adapter = new IdentityHashMap<>();
            params.forEach(p -> adapter.put(p, true));
            for (Map.Entry<String, Param> e : peft.baseModel().namedParameters().entrySet()) {
                if (adapter.containsKey(e.getValue())) {
                    continue;
                }
                String original = e.getKey().replace(".base_layer.", ".");
                assertThat(e.getValue().data().toFloatArray()).as(original).containsExactly(frozen.get(original));
            }

            peft.eval();
            float[] unmerged = logits(peft, ids);
            peft.mergeAdapter();
            float[] merged = logits(peft, ids);
            Reference.assertClose(merged, unmerged, "merged vs unmerged");
            peft.unmergeAdapter();
            try (PeftModel.AdapterScope off = peft.disableAdapter()) {
                float[] base = logits(peft, ids);
                double diff = 0;
                for (int i = 0; i < base.length; i++) {
                    diff = Math.max(diff, Math.abs(base[i] - unmerged[i]));
                }
                assertThat(diff).isGreaterThan(0.1);
            }
        }
    }

    private static float[] logits(PeftModel peft, NDArray ids) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return peft.forward(ModelInput.of(ids)).logits().toFloatArray();
        }
    }
}
