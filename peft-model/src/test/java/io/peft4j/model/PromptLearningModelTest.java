package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.tuners.ModulesToSaveWrapper;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** What PeftModel hands the base model for each prompt-learning method, on a model that records its input. */
class PromptLearningModelTest {
    static final int VOCAB = 20;
    static final int DIM = 8;
    static final int P = 3;

    /** Embedding and a classifier over each position; records the last input. */
    static final class Recorder extends PreTrainedModel {
        ModelInput last;
        private final boolean pastSupported;

        Recorder(NDManager nd, int dim, boolean pastSupported) {
            super(nd, config(dim));
            this.pastSupported = pastSupported;
            registerModule("embed", new Embedding(nd, VOCAB, dim));
            registerModule("classifier", new Linear(nd, dim, 2, true));
        }

        static ModelConfig config(int dim) {
            ObjectNode json = new ObjectMapper().createObjectNode();
            json.put("model_type", "recorder").put("hidden_size", dim).put("num_hidden_layers", 2)
                    .put("num_attention_heads", 4).put("vocab_size", VOCAB);
            return new ModelConfig(json, "recorder config");
        }

        @Override
        public ModelOutput forward(ModelInput in) {
            last = in;
            NDArray x = in.inputsEmbeds() != null ? in.inputsEmbeds() : call("embed", in.inputIds());
            return new ModelOutput(call("classifier", x), null, null);
        }

        @Override
        public Module inputEmbeddings() {
            return child("embed");
        }

        @Override
        public String outputEmbeddingsPath() {
            return null;
        }

        @Override
        public boolean supportsPastKeyValues() {
            return pastSupported;
        }
    }

    NDManager nd;
    Recorder model;
    NDArray ids;
    NDArray mask;

    @BeforeEach
    void setUp() {
        Torch.manualSeed(5);
        nd = Torch.newManager();
        model = new Recorder(nd, DIM, true);
        ids = nd.create(new long[] {1, 2, 3, 4, 5, 6, 7, 8}, new Shape(2, 4));
        mask = nd.create(new long[] {1, 1, 1, 1, 0, 1, 1, 1}, new Shape(2, 4));
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    static PromptTuningConfig prompt(TaskType task) {
        return PromptTuningConfig.builder().numVirtualTokens(P).taskType(task).build();
    }

    private ModelInput run(PeftModel peft, ModelInput in) {
        try (NoGrad ng = NoGrad.enter()) {
            peft.forward(in);
        }
        return model.last;
    }

    @Test
    void causalPromptTuningPrependsTokensMaskAndIgnoredLabels() {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM));
        assertThat(peft).isInstanceOf(PeftModelForCausalLM.class);
        NDArray tt = nd.zeros(new Shape(2, 4), DataType.INT64);
        ModelInput seen = run(peft, ModelInput.builder().inputIds(ids).attentionMask(mask).labels(ids)
                .positionIds(nd.arange(0, 4).toType(DataType.INT64, false).reshape(1, 4)).tokenTypeIds(tt).build());
        assertThat(seen.inputIds()).isNull();
        assertThat(seen.inputsEmbeds().getShape()).isEqualTo(new Shape(2, P + 4, DIM));
        float[] embeds = seen.inputsEmbeds().toFloatArray();
        float[] prompt = peft.getParameter("prompt_encoder.default.embedding.weight").data().toFloatArray();
        float[] words = model.getParameter("embed.weight").data().toFloatArray();
        long[] idv = ids.toLongArray();
        for (int b = 0; b < 2; b++) {
            for (int t = 0; t < P + 4; t++) {
                for (int c = 0; c < DIM; c++) {
                    float want = t < P ? prompt[t * DIM + c] : words[(int) idv[b * 4 + t - P] * DIM + c];
                    assertThat(embeds[(b * (P + 4) + t) * DIM + c]).isEqualTo(want);
                }
            }
        }
        assertThat(seen.attentionMask().toLongArray()).containsExactly(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1);
        assertThat(seen.labels().toLongArray()).containsExactly(-100, -100, -100, 1, 2, 3, 4, -100, -100, -100, 5, 6, 7, 8);
        assertThat(seen.positionIds()).as("dropped, as peft does").isNull();
        assertThat(seen.tokenTypeIds()).as("dropped for CAUSAL_LM").isNull();
    }

    @Test
    void sequenceClassificationKeepsLabelsPadsTokenTypesAndTrainsAHeadCopy() {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.SEQ_CLS));
        assertThat(peft).isInstanceOf(PeftModelForSequenceClassification.class);
        NDArray labels = nd.create(new long[] {0, 1});
        NDArray tt = nd.ones(new Shape(2, 4), DataType.INT64);
        ModelInput seen = run(peft, ModelInput.builder().inputIds(ids).labels(labels).tokenTypeIds(tt).build());
        assertThat(seen.labels().toLongArray()).containsExactly(0, 1);
        assertThat(seen.tokenTypeIds().toLongArray()).containsExactly(0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1);
        assertThat(seen.attentionMask()).isNull();
        assertThat(model.child("classifier")).isInstanceOf(ModulesToSaveWrapper.class);
        // prompt 3 x 8 and the classifier copy 8 x 2 + 2 train; the original head and the embedding do not.
        assertThat(peft.getNbTrainableParameters()).containsExactly(P * DIM + 18, VOCAB * DIM + 18 + P * DIM + 18);
        assertThat(peft.namedParameters().keySet()).containsExactly("base_model.embed.weight",
                "base_model.classifier.original_module.weight", "base_model.classifier.original_module.bias",
                "base_model.classifier.modules_to_save.default.weight",
                "base_model.classifier.modules_to_save.default.bias", "prompt_encoder.default.embedding.weight");
        assertThat(peft.getSubmodule("word_embeddings")).isSameAs(model.child("embed"));
    }

    @Test
    void prefixTuningHandsPerLayerKeyValuesAndKeepsIdsAndLabels() {
        PeftModel peft = PeftModel.getPeftModel(model, PrefixTuningConfig.builder().numVirtualTokens(P)
                .taskType(TaskType.CAUSAL_LM).build());
        ModelInput seen = run(peft, ModelInput.builder().inputIds(ids).attentionMask(mask).labels(ids).build());
        assertThat(seen.inputIds()).isSameAs(ids);
        assertThat(seen.labels()).isSameAs(ids);
        assertThat(seen.attentionMask().getShape()).isEqualTo(new Shape(2, P + 4));
        // 2 layers x {key, value}, each [batch, heads 4, P, head_dim 2]: row t of the embedding holds
        // [layer0 key, layer0 value, layer1 key, layer1 value], each heads x head_dim.
        List<NDArray[]> kv = seen.pastKeyValues();
        assertThat(kv).hasSize(2);
        float[] w = peft.getParameter("prompt_encoder.default.embedding.weight").data().toFloatArray();
        assertThat(w).hasSize(P * 2 * 2 * DIM);
        for (int l = 0; l < 2; l++) {
            for (int which = 0; which < 2; which++) {
                NDArray a = kv.get(l)[which];
                assertThat(a.getShape()).isEqualTo(new Shape(2, 4, P, 2));
                float[] got = a.toFloatArray();
                for (int b = 0; b < 2; b++) {
                    for (int h = 0; h < 4; h++) {
                        for (int t = 0; t < P; t++) {
                            for (int d = 0; d < 2; d++) {
                                float want = w[t * 4 * DIM + (2 * l + which) * DIM + h * 2 + d];
                                assertThat(got[((b * 4 + h) * P + t) * 2 + d]).isEqualTo(want);
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void aGenerationStepWithACacheOnlyExtendsTheMask() {
        for (PeftConfig cfg : List.of(prompt(TaskType.CAUSAL_LM), PrefixTuningConfig.builder().numVirtualTokens(P)
                .taskType(TaskType.CAUSAL_LM).build())) {
            Recorder m = new Recorder(nd, DIM, true);
            PeftModel peft = PeftModel.getPeftModel(m, cfg);
            List<NDArray[]> cache = List.<NDArray[]>of(new NDArray[] {nd.zeros(new Shape(1))});
            NDArray step = nd.create(new long[] {3, 4}, new Shape(2, 1));
            try (NoGrad ng = NoGrad.enter()) {
                peft.forward(ModelInput.builder().inputIds(step).attentionMask(nd.ones(new Shape(2, 6), DataType.INT64))
                        .pastKeyValues(cache).build());
            }
            assertThat(m.last.inputIds()).isSameAs(step);
            assertThat(m.last.pastKeyValues()).isSameAs(cache);
            assertThat(m.last.attentionMask().getShape()).isEqualTo(new Shape(2, P + 6));
        }
    }

    @Test
    void disabledAdapterRunsTheBaseModelAsIs() {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM));
        try (PeftModel.AdapterScope off = peft.disableAdapter()) {
            ModelInput seen = run(peft, ModelInput.builder().inputIds(ids).attentionMask(mask).build());
            assertThat(seen.inputIds()).isSameAs(ids);
            assertThat(seen.attentionMask()).isSameAs(mask);
        }
        assertThat(run(peft, ModelInput.of(ids)).inputsEmbeds()).isNotNull();
    }

    @Test
    void pTuningPromptsAreTheMlpOutputAndEverythingElseIsFrozen() {
        PeftModel peft = PeftModel.getPeftModel(model, PromptEncoderConfig.builder().numVirtualTokens(P)
                .encoderHiddenSize(5).taskType(TaskType.CAUSAL_LM).build());
        for (var e : peft.namedParameters().entrySet()) {
            assertThat(e.getValue().requiresGrad()).as(e.getKey()).isEqualTo(e.getKey().startsWith("prompt_encoder."));
        }
        ModelInput seen = run(peft, ModelInput.of(ids));
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            Module mlp = peft.getSubmodule("prompt_encoder.default.mlp_head");
            NDArray w = peft.getParameter("prompt_encoder.default.embedding.weight").data();
            float[] manual = mlp.child("4").forward(mlp.child("2").forward(mlp.child("0").forward(w).maximum(0f))
                    .maximum(0f)).toFloatArray();
            float[] got = seen.inputsEmbeds().get("1, 0:3, :").toFloatArray();
            assertThat(got).isEqualTo(manual);
        }
    }

    @Test
    void savesOnlyPromptEmbeddingsAndLoadsThemForInference(@TempDir Path tmp) throws Exception {
        PeftModel peft = PeftModel.getPeftModel(model, PrefixTuningConfig.builder().numVirtualTokens(P)
                .prefixProjection(true).encoderHiddenSize(6).taskType(TaskType.CAUSAL_LM).build());
        float[] expected;
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            Module t = peft.getSubmodule("prompt_encoder.default.transform");
            NDArray w = peft.getParameter("prompt_encoder.default.embedding.weight").data();
            expected = t.child("2").forward(t.child("0").forward(w).tanh()).toFloatArray();
        }
        peft.saveAdapter(tmp);
        try (SafetensorsFile f = SafetensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
            assertThat(f.names()).containsExactly("prompt_embeddings");
            assertThat(f.info("prompt_embeddings").shape()).containsExactly(P, 2 * 2 * DIM);
            assertThat(f.toFloatArray("prompt_embeddings")).isEqualTo(expected);
        }
        try (Recorder fresh = new Recorder(Torch.newManager(), DIM, true)) {
            PeftModel loaded = PeftModel.fromPretrained(fresh, tmp);
            assertThat(loaded.getParameter("prompt_encoder.default.embedding.weight").data().toFloatArray())
                    .isEqualTo(expected);
            assertThat(loaded.getNbTrainableParameters()[0]).isZero();
            assertThat(loaded.peftConfig().get("default").inferenceMode()).isTrue();
            assertThatThrownBy(() -> PeftModel.fromPretrained(new Recorder(nd, DIM, true), tmp, "default", true))
                    .hasMessageContaining("Cannot set a prompt learning adapter to trainable");
        }
    }

    @Test
    void severalAdaptersSwitchAndSaveInSubdirectories(@TempDir Path tmp) throws Exception {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM));
        peft.addAdapter("other", prompt(TaskType.CAUSAL_LM));
        assertThat(peft.activeAdapter()).isEqualTo("default");
        float[] other = peft.getParameter("prompt_encoder.other.embedding.weight").data().toFloatArray();
        peft.setAdapter("other");
        ModelInput seen = run(peft, ModelInput.of(ids));
        assertThat(seen.inputsEmbeds().get("0, 0:3, :").toFloatArray()).isEqualTo(other);
        assertThatThrownBy(() -> peft.addAdapter("x", PrefixTuningConfig.builder().numVirtualTokens(2)
                .taskType(TaskType.CAUSAL_LM).build())).hasMessageContaining("Cannot combine adapters");
        assertThatThrownBy(() -> peft.addAdapter("other", prompt(TaskType.CAUSAL_LM))).hasMessageContaining("already exists");
        peft.saveAdapter(tmp);
        assertThat(tmp.resolve("adapter_model.safetensors")).exists();
        assertThat(tmp.resolve("other/adapter_model.safetensors")).exists();
        peft.deleteAdapter("other");
        assertThat(peft.activeAdapter()).isEqualTo("default");
        assertThat(peft.peftConfig()).containsOnlyKeys("default");
    }

    @Test
    void modulesToSaveOfANewerConfigTrainAndSaveACopy(@TempDir Path tmp) throws Exception {
        PeftModel peft = PeftModel.getPeftModel(model, PromptTuningConfig.builder().numVirtualTokens(P)
                .taskType(TaskType.CAUSAL_LM).modulesToSave("classifier").build());
        assertThat(model.child("classifier")).isInstanceOf(ModulesToSaveWrapper.class);
        assertThat(peft.getNbTrainableParameters()[0]).isEqualTo(P * DIM + 18);
        peft.saveAdapter(tmp);
        try (SafetensorsFile f = SafetensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
            assertThat(f.names()).containsExactlyInAnyOrder("prompt_embeddings", "base_model.classifier.weight",
                    "base_model.classifier.bias");
        }
    }

    @Test
    void mergingIsNotAvailable() {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM));
        assertThatThrownBy(peft::mergeAndUnload).isInstanceOf(UnsupportedOperationException.class)
                .hasMessageContaining("prompt-learning").hasMessageContaining("PROMPT_TUNING");
        assertThatThrownBy(peft::mergeAdapter).isInstanceOf(UnsupportedOperationException.class);
        assertThatThrownBy(peft::tuner).hasMessageContaining("no tuner");
    }

    @Test
    void badInputFailsWithClearMessages(@TempDir Path tmp) {
        assertThatThrownBy(() -> PromptTuningConfig.builder().numVirtualTokens(0).build())
                .hasMessageContaining("num_virtual_tokens").hasMessageContaining("must be > 0");
        assertThatThrownBy(() -> PromptTuningConfig.builder().numVirtualTokens(-2).build())
                .hasMessageContaining("num_virtual_tokens").hasMessageContaining("-2");
        assertThatThrownBy(() -> PeftModel.getPeftModel(model, PromptTuningConfig.builder()
                .taskType(TaskType.CAUSAL_LM).build())).hasMessageContaining("num_virtual_tokens must be set");
        assertThatThrownBy(() -> PeftModel.getPeftModel(model, PromptTuningConfig.builder().numVirtualTokens(2).build()))
                .hasMessageContaining("task_type CAUSAL_LM or SEQ_CLS");
        assertThatThrownBy(() -> PeftModel.getPeftModel(new Recorder(nd, DIM, false), PrefixTuningConfig.builder()
                .numVirtualTokens(2).taskType(TaskType.SEQ_CLS).build()))
                .hasMessageContaining("does not support past key values");
        // A prompt adapter saved for an 8-wide model does not fit a 6-wide one.
        PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM)).saveAdapter(tmp);
        assertThatThrownBy(() -> PeftModel.fromPretrained(new Recorder(nd, 6, true), tmp))
                .hasMessageContaining("token_dim is 8").hasMessageContaining("embeddings have size 6");
    }

    @Test
    void trainableParametersAreTheEncoderOnly() {
        PeftModel peft = PeftModel.getPeftModel(model, prompt(TaskType.CAUSAL_LM));
        List<Param> trainable = peft.trainableParameters();
        assertThat(trainable).containsExactly(peft.getParameter("prompt_encoder.default.embedding.weight"));
        assertThat(peft.trainableParametersLine())
                .isEqualTo("trainable params: 24 || all params: 202 || trainable%: 11.8812");
    }
}
