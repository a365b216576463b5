package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.model.SaveOptions;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A PiSSA / OLoRA adapter trained on the reference LLaMA, saved converted to plain LoRA, reproduces the trained
 * model's logits on a fresh, unmodified base model.
 */
class WeightConversionTrainingTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @CsvSource({"pissa, false, 16", "olora, false, 16", "pissa, true, 11.313708498984761"})
    void convertedAdapterReproducesTrainedLogitsOnFreshBase(String init, boolean rslora, double savedAlpha)
            throws Exception {
        Torch.manualSeed(5);
        Path initDir = tmp.resolve("init");
        Path converted = tmp.resolve("converted");
        float[] trained;
        try (NDManager nd = Torch.newManager();
             PreTrainedModel model = HfModels.fromPretrained(Reference.model("llama"))) {
            LoraConfig cfg = LoraConfig.builder().r(4).loraAlpha(8).useRslora(rslora).initLoraWeights(init)
                    .targetModules("q_proj", "v_proj", "down_proj").taskType(TaskType.CAUSAL_LM).build();
            PeftModel peft = PeftModel.getPeftModel(model, cfg);
            peft.saveAdapter(initDir);
            NDArray ids = nd.randomInteger(4, 256, new Shape(2, 12), DataType.INT64);
            peft.train(true);
            AdamW opt = AdamW.builder().lr(1e-2f).build();
            float first = 0;
            float last = 0;
            for (int step = 0; step < 6; step++) {
                TrainStep.Result r = TrainStep.run(() -> peft.forward(
                        ModelInput.builder().inputIds(ids).labels(ids).build()).loss(), opt, peft.trainableParameters());
                first = step == 0 ? r.loss() : first;
                last = r.loss();
            }
            assertThat(last).as("training moved the adapter").isLessThan(first);
            peft.eval();
            trained = logits(peft, ids);
            peft.saveAdapter(converted, SaveOptions.builder().pathInitialModelForWeightConversion(initDir).build());
            checkOnFreshBase(converted, ids, trained, init + (rslora ? "+rsLoRA" : ""));
        }

        LoraConfig saved = (LoraConfig) PeftConfig.fromPretrained(converted);
        assertThat(saved.r()).isEqualTo(8);
        assertThat(saved.loraAlphaValue()).isEqualTo(savedAlpha);
        assertThat(saved.initLoraWeights().isTrue()).isTrue();
        try (SafetensorsFile f = SafetensorsFile.open(converted.resolve("adapter_model.safetensors"))) {
            assertThat(f.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape())
                    .containsExactly(8, 64);
            assertThat(f.info("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape())
                    .containsExactly(64, 8);
        }
    }

    private static void checkOnFreshBase(Path converted, NDArray ids, float[] trained, String what) throws Exception {
        try (PreTrainedModel fresh = HfModels.fromPretrained(Reference.model("llama"))) {
            float[] original = fresh.getParameter("model.layers.0.self_attn.q_proj.weight").data().toFloatArray();
            PeftModel plain = PeftModel.fromPretrained(fresh, converted);
            // Plain LoRA: the base weight stays the original one (PiSSA/OLoRA would have replaced it by a residual).
            assertThat(fresh.getParameter("model.layers.0.self_attn.q_proj.base_layer.weight").data().toFloatArray())
                    .isEqualTo(original);
            Reference.assertClose(logits(plain, ids), trained, what + " converted on a fresh base vs trained");
        }
    }

    private static float[] logits(PeftModel peft, NDArray ids) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return peft.forward(ModelInput.of(ids)).logits().toFloatArray();
        }
    }
}
