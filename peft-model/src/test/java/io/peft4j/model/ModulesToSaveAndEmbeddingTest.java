package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.tuners.ModulesToSaveWrapper;
import io.peft4j.tuners.lora.LoraEmbedding;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** modules_to_save (with SEQ_CLS's automatic heads) and LoRA on an Embedding, on a small classifier. */
class ModulesToSaveAndEmbeddingTest {
    NDManager nd;

    /** ids -> embed_tokens (20 x 6) -> mean over time -> pre_classifier (6x6) -> relu -> classifier (6 -> 3). */
    static final class Classifier extends Module {
        Classifier(NDManager m) {
            registerModule("embed_tokens", new Embedding(m, 20, 6));
            registerModule("pre_classifier", new Linear(m, 6, 6, true));
            registerModule("classifier", new Linear(m, 6, 3, true));
        }

        @Override
        public NDArray forward(NDArray ids) {
            NDArray h = call("embed_tokens", ids).mean(new int[] {1});
            return call("classifier", F.relu(call("pre_classifier", h)));
        }
    }

    @BeforeEach
    void setUp() {
        Torch.manualSeed(7);
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private NDArray ids() {
        return nd.create(new long[] {1, 5, 7, 19, 0, 3, 3, 12}, new Shape(2, 4));
    }

    private static float[] run(Module m, NDArray ids) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(ids).toFloatArray();
        }
    }

    @Test
    void seqClsWrapsTheHeadsTrainsCopiesAndSavesThemUnderPlainNames(@TempDir Path dir) throws Exception {
        Classifier model = new Classifier(nd);
        float[] base = run(model, ids());
        Param originalHead = model.getParameter("classifier.weight");
        PeftModel peft = PeftModel.getPeftModel(model, LoraConfig.builder().r(2).targetModules("embed_tokens")
                .taskType(TaskType.SEQ_CLS).build());
        assertThat(peft).isInstanceOf(PeftModelForSequenceClassification.class);
        // peft appends classifier and score; "classifier" also selects pre_classifier (a plain string suffix).
        assertThat(peft.peftConfig().get("default").toJsonNode().get("modules_to_save").toString())
                .isEqualTo("[\"classifier\",\"score\"]");
        assertThat(model.child("classifier")).isInstanceOf(ModulesToSaveWrapper.class);
        assertThat(model.child("pre_classifier")).isInstanceOf(ModulesToSaveWrapper.class);
        assertThat(model.child("embed_tokens")).isInstanceOf(LoraEmbedding.class);

        Map<String, Param> named = peft.namedParameters();
        assertThat(named.get("base_model.model.classifier.original_module.weight").requiresGrad()).isFalse();
        assertThat(named.get("base_model.model.classifier.original_module.weight")).isSameAs(originalHead);
        assertThat(named.get("base_model.model.classifier.modules_to_save.default.weight").requiresGrad()).isTrue();
        assertThat(named.get("base_model.model.embed_tokens.base_layer.weight").requiresGrad()).isFalse();
        assertThat(named.get("base_model.model.embed_tokens.lora_embedding_A.default").requiresGrad()).isTrue();
        // trainable: A 2x20 + B 6x2 + pre_classifier copy 42 + classifier copy 21 = 40 + 12 + 42 + 21 = 115
        assertThat(peft.getNbTrainableParameters()[0]).isEqualTo(115);
        // the copies start equal to the originals and lora_embedding_A starts at zero: output unchanged
        assertThat(run(peft, ids())).containsExactly(base, within(1e-6f));

        // change the copy and the LoRA B: output changes, and disabling restores the base output exactly
        Param copyW = named.get("base_model.model.classifier.modules_to_save.default.weight");
        copyW.setData(copyW.data().add(1f));
        Param a = named.get("base_model.model.embed_tokens.lora_embedding_A.default");
        a.setData(nd.randomNormal(0f, 0.5f, a.shape(), DataType.FLOAT32));
        assertThat(originalHead.data().toFloatArray()).isNotEqualTo(copyW.data().toFloatArray());
        float[] adapted = run(peft, ids());
        assertThat(maxDiff(adapted, base)).isGreaterThan(0.1f);
        try (PeftModel.AdapterScope off = peft.disableAdapter()) {
            assertThat(run(peft, ids())).containsExactly(base, within(1e-6f));
        }
        assertThat(run(peft, ids())).containsExactly(adapted, within(1e-6f));

        peft.saveAdapter(dir);
        try (SafetensorsFile st = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            Map<String, String> shapes = new TreeMap<>();
            for (String n : st.names()) {
                shapes.put(n, java.util.Arrays.toString(st.info(n).shape()));
            }
            assertThat(shapes).containsExactlyEntriesOf(new TreeMap<>(Map.of(
                    "base_model.model.classifier.bias", "[3]",
                    "base_model.model.classifier.weight", "[3, 6]",
                    "base_model.model.pre_classifier.bias", "[6]",
                    "base_model.model.pre_classifier.weight", "[6, 6]",
                    "base_model.model.embed_tokens.lora_embedding_A", "[2, 20]",
                    "base_model.model.embed_tokens.lora_embedding_B", "[6, 2]")));
        }

        // reload onto a fresh copy of the same base: same outputs, heads restored from the file
        Torch.manualSeed(7);
        Classifier fresh = new Classifier(nd);
        assertThat(run(fresh, ids())).containsExactly(base, within(0f));
        PeftModel loaded = PeftModel.fromPretrained(fresh, dir);
        assertThat(run(loaded, ids())).containsExactly(adapted, within(1e-6f));

        // merge_and_unload keeps the trained head and folds LoRA into the embedding
        Module merged = loaded.mergeAndUnload();
        assertThat(merged.child("classifier")).isInstanceOf(Linear.class);
        assertThat(merged.child("embed_tokens")).isInstanceOf(Embedding.class);
        assertThat(run(merged, ids())).containsExactly(adapted, within(1e-5f));
    }

    @Test
    void anAdapterWithoutItsHeadTensorsLoadsAndKeepsTheBaseHeadButMissingLoraTensorsFail(@TempDir Path dir)
            throws Exception {
        Classifier model = new Classifier(nd);
        PeftModel peft = PeftModel.getPeftModel(model, LoraConfig.builder().r(2).targetModules("embed_tokens")
                .taskType(TaskType.SEQ_CLS).build());
        peft.saveAdapter(dir);
        Path file = dir.resolve("adapter_model.safetensors");
        Map<String, io.peft4j.nn.safetensors.TensorData> kept = new TreeMap<>();
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            for (String n : st.names()) {
                if (n.contains("lora_")) {
                    kept.put(n, io.peft4j.nn.safetensors.TensorData.ofFloats(st.toFloatArray(n), st.info(n).shape()));
                }
            }
        }
        io.peft4j.nn.safetensors.SafetensorsWriter.write(file, kept, Map.of("format", "pt"));

        Torch.manualSeed(7);
        Classifier fresh = new Classifier(nd);
        float[] head = fresh.getParameter("classifier.weight").data().toFloatArray();
        PeftModel loaded = PeftModel.fromPretrained(fresh, dir);
        assertThat(loaded.namedParameters().get("base_model.model.classifier.modules_to_save.default.weight")
                .data().toFloatArray()).isEqualTo(head);

        kept.remove("base_model.model.embed_tokens.lora_embedding_B");
        io.peft4j.nn.safetensors.SafetensorsWriter.write(file, kept, Map.of("format", "pt"));
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> PeftModel.fromPretrained(new Classifier(nd), dir))
                .hasMessageContaining("missing adapter keys").hasMessageContaining("lora_embedding_B");
    }

    @Test
    void loraEmbeddingComputesTheEmbeddingOfATransposedTimesBTransposedScaled() {
        Embedding emb = new Embedding(nd, 10, 4);
        LoraEmbedding layer = new LoraEmbedding(emb);
        layer.updateLayer("default", 3, 6.0, 0.0, io.peft4j.config.InitLoraWeights.of(false), false, false);
        NDArray ids = nd.create(new long[] {2, 9, 2}, new Shape(3));
        float[] out = run(layer, ids);
        float[] w = emb.weight().data().toFloatArray();
        Module dictA = layer.child("lora_embedding_A");
        float[] a = dictA.param("default").data().toFloatArray(); // (3, 10)
        float[] b = layer.child("lora_embedding_B").param("default").data().toFloatArray(); // (4, 3)
        long[] idv = {2, 9, 2};
        double scale = 6.0 / 3;
        for (int t = 0; t < 3; t++) {
            for (int d = 0; d < 4; d++) {
                double v = w[(int) idv[t] * 4 + d];
                for (int k = 0; k < 3; k++) {
                    v += a[k * 10 + (int) idv[t]] * b[d * 3 + k] * scale;
                }
                assertThat(out[t * 4 + d]).isCloseTo((float) v, within(1e-5f));
            }
        }
        layer.merge(true, null);
        assertThat(run(layer, ids)).containsExactly(out, within(1e-5f));
        layer.unmerge();
        assertThat(emb.weight().data().toFloatArray()).containsExactly(w, within(1e-6f));
    }

    @Test
    void deepCopyIsIndependent() {
        Linear l = new Linear(nd, 3, 2, true);
        Module c = l.deepCopy();
        assertThat(c).isInstanceOf(Linear.class).isNotSameAs(l);
        assertThat(c.param("weight")).isNotSameAs(l.param("weight"));
        assertThat(c.param("weight").data().toFloatArray()).containsExactly(l.param("weight").data().toFloatArray());
        c.param("weight").setData(c.param("weight").data().add(1f));
        assertThat(c.param("weight").data().toFloatArray()[0])
                .isCloseTo(l.param("weight").data().toFloatArray()[0] + 1f, within(1e-6f));
        assertThat(l.children()).isEmpty();
    }

    private static float maxDiff(float[] a, float[] b) {
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }
}
