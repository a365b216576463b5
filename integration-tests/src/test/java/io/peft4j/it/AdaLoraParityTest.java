package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.tuners.adalora.SVDLinear;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * AdaLoRA beyond {@link LoraParityTest}: HF adapters saved again by peft4j are the same files and reload to the
 * golden logits, the pruned case loads cut to its kept ranks, and a budgeted training run on the reference LLaMA
 * ends at the target budget and reloads exactly.
 */
class AdaLoraParityTest {

    @ParameterizedTest
    @ValueSource(strings = {"llama-adalora", "gpt2-adalora", "bert-adalora", "llama-adalora-pruned"})
    void hfAdapterSavesBackIdenticallyAndReloads(String name, @TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("again");
        try (PreTrainedModel model = LoraParityTest.base(name)) {
            PeftModel.fromPretrained(model, Reference.adapter(name)).saveAdapter(dir);
        }
        JsonNode ours = Reference.JSON.readTree(dir.resolve("adapter_config.json").toFile());
        com.fasterxml.jackson.databind.node.ObjectNode theirs = (com.fasterxml.jackson.databind.node.ObjectNode)
                Reference.JSON.readTree(Reference.adapter(name).resolve("adapter_config.json").toFile());
        if (name.startsWith("bert")) {
            // peft's sequence-classification model appends its heads to modules_to_save again on every load.
            ((com.fasterxml.jackson.databind.node.ArrayNode) theirs.get("modules_to_save")).add("classifier").add("score");
        }
        assertThat(ours).isEqualTo(theirs);
        try (SafetensorsFile a = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"));
             SafetensorsFile b = SafetensorsFile.open(Reference.adapter(name).resolve("adapter_model.safetensors"))) {
            assertThat(new TreeSet<>(a.names())).isEqualTo(new TreeSet<>(b.names()));
            for (String n : b.names()) {
                assertThat(a.info(n).shape()).as(n).isEqualTo(b.info(n).shape());
                assertThat(a.toFloatArray(n)).as(n).isEqualTo(b.toFloatArray(n));
            }
        }
        try (PreTrainedModel model = LoraParityTest.base(name)) {
            PeftModel reloaded = PeftModel.fromPretrained(model, dir);
            Reference.assertClose(LoraParityTest.logits(reloaded), Reference.tensor(name, "logits"), name + " reloaded");
        }
    }

    @Test
    void prunedAdapterLoadsCutToItsKeptRanksAndKeepsRanknum() throws Exception {
        JsonNode kept = Reference.manifest("llama-adalora-pruned").get("adalora_rank_pattern_kept_ranks");
        try (PreTrainedModel model = LoraParityTest.base("llama-adalora-pruned")) {
            PeftModel peft = PeftModel.fromPretrained(model, Reference.adapter("llama-adalora-pruned"));
            List<String> checked = new ArrayList<>();
            kept.fields().forEachRemaining(e -> {
                String path = e.getKey().substring(0, e.getKey().length() - ".lora_E".length());
                SVDLinear layer = (SVDLinear) peft.baseModel().getSubmodule(path);
                int r = e.getValue().asInt();
                assertThat(layer.rank("default")).as(path).isEqualTo(r);
                assertThat(layer.loraA("default").shape().get(0)).isEqualTo(r);
                assertThat(layer.loraE("default").shape()).isEqualTo(new Shape(r, 1));
                assertThat(layer.loraB("default").shape().get(1)).isEqualTo(r);
                // peft copies the old ranknum: the scale stays lora_alpha / init_r
                assertThat(layer.ranknum("default")).isEqualTo(12f);
                assertThat(layer.scaling("default")).isEqualTo(16.0);
                checked.add(path);
            });
            assertThat(checked).hasSize(4);
            // frozen for inference, as loaded
            assertThat(peft.getNbTrainableParameters()[0]).isZero();
        }
    }

    /** The llama-adalora-pruned recipe in Java: train with the orthogonal penalty and the rank budget every step. */
    @Test
    void budgetedTrainingEndsAtTheTargetBudgetAndReloadsExactly(@TempDir Path tmp) throws Exception {
        int totalStep = 30;
        Path dir = tmp.resolve("trained");
        float[] trainedLogits;
        Torch.manualSeed(17);
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            AdaLoraConfig cfg = AdaLoraConfig.builder().initR(12).targetR(4).loraAlpha(16)
                    .targetModules("q_proj", "v_proj").tinit(5).tfinal(5).deltaT(2).totalStep(totalStep)
                    .taskType(TaskType.CAUSAL_LM).build();
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            assertThat(peft.trainableParametersLine())
                    .isEqualTo(Reference.manifest("llama-adalora").get("print_trainable_parameters").asText());
            peft.train(true);
            NDManager m = model.manager();
            NDArray ids = m.randomInteger(4, 256, new Shape(2, 12), DataType.INT64);
            NDScope.unregister(ids);
            ModelInput in = ModelInput.builder().inputIds(ids).labels(ids).build();
            List<Param> params = peft.trainableParameters();
            AdamW opt = AdamW.builder().lr(1e-2f).build();
            float first = 0;
            float last = 0;
            int liveAtStep3 = 0;
            for (int step = 0; step <= totalStep + 3; step++) {
                int s = step;
                TrainStep.Result r = TrainStep.run(() -> peft.forward(in).loss(), opt, params,
                        () -> peft.updateAndAllocate(s));
                first = step == 0 ? r.loss() : first;
                last = r.loss();
                if (step == 3) {
                    liveAtStep3 = m.getManagedArrays().size();
                }
                if (step == totalStep - 5 - 1) {
                    // The importance state is updated in place: nothing accumulates while it is kept ...
                    assertThat(m.getManagedArrays().size()).isEqualTo(liveAtStep3);
                }
            }
            assertThat(last).isLessThan(first * 0.8f);
            // ... and it is freed once the budget is final.
            assertThat(m.getManagedArrays().size()).isLessThan(liveAtStep3);

            Map<String, List<Boolean>> pattern = ((AdaLoraConfig) peft.peftConfig().get("default")).rankPattern();
            assertThat(pattern.keySet()).containsExactly("model.layers.0.self_attn.q_proj.lora_E.default",
                    "model.layers.0.self_attn.v_proj.lora_E.default", "model.layers.1.self_attn.q_proj.lora_E.default",
                    "model.layers.1.self_attn.v_proj.lora_E.default");
            long keptRanks = pattern.values().stream().flatMap(List::stream).filter(b -> b).count();
            assertThat(keptRanks).isEqualTo(4 * 4);
            peft.eval();
            trainedLogits = LoraParityTest.logits(peft);
            peft.saveAdapter(dir);
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
                long savedRanks = 0;
                for (String n : f.names()) {
                    if (n.endsWith(".lora_E")) {
                        savedRanks += f.info(n).shape()[0];
                    }
                }
                assertThat(savedRanks).isEqualTo(keptRanks);
            }
        }
        try (PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            PeftModel reloaded = PeftModel.fromPretrained(model, dir);
            Reference.assertClose(LoraParityTest.logits(reloaded), trainedLogits, "trained adalora reloaded");
        }
    }
}
