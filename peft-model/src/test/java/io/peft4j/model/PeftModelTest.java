package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.tuners.NoMatchingTargetException;
import io.peft4j.tuners.lora.LoraLinear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class PeftModelTest {
    NDManager manager;

    /** in 6 -> 5 -> 4, names like a transformer block. */
    static final class Net extends Module {
        Net(NDManager m) {
            Module block = registerModule("block", new Holder());
            block.setChild("up_proj", new Linear(m, 6, 5, true));
            block.setChild("down_proj", new Linear(m, 5, 4, false));
            registerModule("head", new Linear(m, 4, 3, true));
        }

        @Override
        public NDArray forward(NDArray x) {
            Module block = child("block");
            NDArray h = F.relu(block.child("up_proj").forward(x));
            return call("head", block.child("down_proj").forward(h));
        }
    }

    static final class Holder extends Module {}

    @BeforeEach
    void setUp() {
        Torch.manualSeed(7);
        manager = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        manager.close();
    }

    private LoraConfig config(String... targets) {
        return LoraConfig.builder().r(2).loraAlpha(4).targetModules(targets).build();
    }

    private float[] run(Module m, NDArray x) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            return m.forward(x).toFloatArray();
        }
    }

    private static void randomizeB(PeftModel peft, NDManager m) {
        peft.tuner().tunerLayers().values().forEach(t -> {
            Linear b = (Linear) ((io.peft4j.nn.ModuleDict) t.child("lora_B")).get("default");
            b.weight().setData(m.randomNormal(0f, 0.5f, b.weight().shape(), DataType.FLOAT32));
        });
    }

    @Test
    void countsAndLineMatchHandComputation() {
        PeftModel peft = PeftModel.getPeftModel(new Net(manager), config("up_proj", "down_proj"));
        // base: 6*5+5 + 5*4 + 4*3+3 = 70; lora r=2: 2*6+5*2 + 2*5+4*2 = 40
        assertThat(peft.getNbTrainableParameters()).containsExactly(40, 110);
        assertThat(peft.trainableParametersLine())
                .isEqualTo("trainable params: 40 || all params: 110 || trainable%: 36.3636");
        assertThat(peft.namedParameters().keySet()).contains(
                "base_model.model.block.up_proj.base_layer.weight",
                "base_model.model.block.up_proj.lora_A.default.weight",
                "base_model.model.block.down_proj.lora_B.default.weight");
    }

    @Test
    void freshAdapterIsANoOpAndInitFollowsPeft() {
        Net net = new Net(manager);
        NDArray x = manager.randomNormal(new Shape(3, 6));
        float[] before = run(net, x);
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj"));
        assertThat(run(peft, x)).containsExactly(before);
        LoraLinear l = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        assertThat(l.scaling("default")).isEqualTo(2.0);
        float[] a = ((Linear) ((io.peft4j.nn.ModuleDict) l.child("lora_A")).get("default")).weight().data()
                .toFloatArray();
        float bound = (float) (1 / Math.sqrt(6));
        for (float v : a) {
            assertThat(Math.abs(v)).isLessThanOrEqualTo(bound);
        }
    }

    @Test
    void dropoutActsOnlyOnTheLoraBranchAndOnlyInTraining() {
        LoraConfig c = LoraConfig.builder().r(2).loraAlpha(4).loraDropout(0.5).targetModules("up_proj").build();
        Net net = new Net(manager);
        NDArray x = manager.randomNormal(new Shape(8, 6));
        float[] base = run(net, x);
        PeftModel peft = PeftModel.getPeftModel(net, c);
        randomizeB(peft, manager);
        peft.train(true);
        float[] a = run(peft, x);
        float[] b = run(peft, x);
        assertThat(a).isNotEqualTo(b);
        peft.eval();
        assertThat(run(peft, x)).containsExactly(run(peft, x));
        // With B = 0 the branch vanishes: dropout must not touch the base path.
        Net other = new Net(manager);
        float[] otherBase = run(other, x);
        PeftModel fresh = PeftModel.getPeftModel(other, c);
        fresh.train(true);
        assertThat(run(fresh, x)).containsExactly(otherBase);
        assertThat(base).hasSize(24);
    }

    @Test
    void rsloraScalingUsesSqrtRank() {
        LoraConfig c = LoraConfig.builder().r(4).loraAlpha(8).useRslora(true).targetModules("up_proj").build();
        PeftModel peft = PeftModel.getPeftModel(new Net(manager), c);
        assertThat(((LoraLinear) peft.baseModel().getSubmodule("block.up_proj")).scaling("default")).isEqualTo(4.0);
    }

    @Test
    void targetsMatchingNothingFailAndListModuleNames() {
        assertThatThrownBy(() -> PeftModel.getPeftModel(new Net(manager), config("q_proj", "v_proj")))
                .isInstanceOf(NoMatchingTargetException.class)
                .hasMessageContaining("q_proj")
                .hasMessageContaining("not found in the base model")
                .hasMessageContaining("up_proj").hasMessageContaining("down_proj").hasMessageContaining("head");
    }

    @Test
    void mergeEqualsUnmergedAndUnmergeRestoresWeights() {
        Net net = new Net(manager);
        float[] w0 = net.getParameter("block.up_proj.weight").data().toFloatArray();
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj", "down_proj"));
        randomizeB(peft, manager);
        NDArray x = manager.randomNormal(new Shape(3, 6));
        float[] unmerged = run(peft, x);
        peft.mergeAdapter();
        float[] merged = run(peft, x);
        for (int i = 0; i < merged.length; i++) {
            assertThat(merged[i]).isCloseTo(unmerged[i], within(1e-5f));
        }
        peft.unmergeAdapter();
        float[] w1 = peft.baseModel().getParameter("block.up_proj.base_layer.weight").data().toFloatArray();
        for (int i = 0; i < w0.length; i++) {
            assertThat(w1[i]).isCloseTo(w0[i], within(1e-6f));
        }
        Module plain = peft.mergeAndUnload();
        assertThat(plain.getSubmodule("block.up_proj")).isInstanceOf(Linear.class);
        float[] unloaded = run(plain, x);
        for (int i = 0; i < unloaded.length; i++) {
            assertThat(unloaded[i]).isCloseTo(unmerged[i], within(1e-5f));
        }
    }

    @Test
    void safeMergeRefusesNonFiniteAndLeavesTheModelUnchanged() {
        Net net = new Net(manager);
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj", "down_proj"));
        randomizeB(peft, manager);
        LoraLinear down = (LoraLinear) peft.baseModel().getSubmodule("block.down_proj");
        Linear b = (Linear) ((io.peft4j.nn.ModuleDict) down.child("lora_B")).get("default");
        float[] bad = b.weight().data().toFloatArray();
        bad[3] = Float.NaN;
        b.weight().setData(manager.create(bad, b.weight().shape()));
        float[] upBefore = peft.baseModel().getParameter("block.up_proj.base_layer.weight").data().toFloatArray();
        assertThatThrownBy(() -> peft.mergeAndUnload(true, null))
                .hasMessageContaining("NaN").hasMessageContaining("default");
        assertThat(peft.baseModel().getSubmodule("block.up_proj")).isInstanceOf(LoraLinear.class);
        assertThat(peft.baseModel().getParameter("block.up_proj.base_layer.weight").data().toFloatArray())
                .containsExactly(upBefore);
    }

    @Test
    void disableAdapterGivesTheBaseOutput() {
        Net net = new Net(manager);
        NDArray x = manager.randomNormal(new Shape(3, 6));
        float[] base = run(net, x);
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj"));
        randomizeB(peft, manager);
        float[] adapted = run(peft, x);
        assertThat(adapted).isNotEqualTo(base);
        try (PeftModel.AdapterScope off = peft.disableAdapter()) {
            assertThat(run(peft, x)).containsExactly(base);
        }
        assertThat(run(peft, x)).containsExactly(adapted);
    }

    @Test
    void saveWritesHfKeysAndReloadReproducesOutputs(@TempDir Path tmp) throws Exception {
        Net net = new Net(manager);
        Map<String, NDArray> baseState = new LinkedHashMap<>();
        net.stateDict().forEach((k, v) -> baseState.put(k, v.duplicate()));
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj", "down_proj"));
        randomizeB(peft, manager);
        NDArray x = manager.randomNormal(new Shape(3, 6));
        float[] expected = run(peft, x);
        Path dir = tmp.resolve("adapter");
        peft.saveAdapter(dir);

        try (SafetensorsFile st = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            assertThat(st.names()).containsExactlyInAnyOrder(
                    "base_model.model.block.up_proj.lora_A.weight", "base_model.model.block.up_proj.lora_B.weight",
                    "base_model.model.block.down_proj.lora_A.weight", "base_model.model.block.down_proj.lora_B.weight");
            assertThat(st.info("base_model.model.block.down_proj.lora_B.weight").shape()).containsExactly(4, 2);
            assertThat(st.metadata()).containsEntry("format", "pt");
        }
        PeftConfig saved = PeftConfig.fromPretrained(dir);
        assertThat(saved.inferenceMode()).isTrue();
        assertThat(Files.readString(dir.resolve("adapter_config.json"))).contains("\"r\": 2");

        Net fresh = new Net(manager);
        fresh.loadStateDict(baseState, true);
        PeftModel loaded = PeftModel.fromPretrained(fresh, dir);
        assertThat(run(loaded, x)).containsExactly(expected);
        assertThat(loaded.getNbTrainableParameters()[0]).isZero();
    }

    @Test
    void failedSaveLeavesThePreviousAdapterIntact(@TempDir Path tmp) throws Exception {
        PeftModel peft = PeftModel.getPeftModel(new Net(manager), config("up_proj"));
        randomizeB(peft, manager);
        Path dir = tmp.resolve("adapter");
        peft.saveAdapter(dir);
        byte[] weights = Files.readAllBytes(dir.resolve("adapter_model.safetensors"));
        byte[] cfg = Files.readAllBytes(dir.resolve("adapter_config.json"));

        LoraLinear up = (LoraLinear) peft.baseModel().getSubmodule("block.up_proj");
        Linear b = (Linear) ((io.peft4j.nn.ModuleDict) up.child("lora_B")).get("default");
        float[] bad = b.weight().data().toFloatArray();
        bad[0] = Float.POSITIVE_INFINITY;
        b.weight().setData(manager.create(bad, b.weight().shape()));
        assertThatThrownBy(() -> peft.saveAdapter(dir)).hasMessageContaining("lora_B.weight")
                .hasMessageContaining("infinite");
        assertThat(Files.readAllBytes(dir.resolve("adapter_model.safetensors"))).isEqualTo(weights);
        assertThat(Files.readAllBytes(dir.resolve("adapter_config.json"))).isEqualTo(cfg);
        try (var files = Files.list(tmp)) {
            assertThat(files.map(p -> p.getFileName().toString())).containsExactly("adapter");
        }
    }

    @Test
    void adaptersThatDoNotFitTheModelFailWithTheKey(@TempDir Path tmp) throws Exception {
        PeftModel peft = PeftModel.getPeftModel(new Net(manager), config("up_proj"));
        Path dir = tmp.resolve("adapter");
        peft.saveAdapter(dir);
        Path file = dir.resolve("adapter_model.safetensors");

        // wrong rank
        SafetensorsWriter.write(file, Map.of(
                "base_model.model.block.up_proj.lora_A.weight", TensorData.ofFloats(new float[18], 3, 6),
                "base_model.model.block.up_proj.lora_B.weight", TensorData.ofFloats(new float[15], 5, 3)),
                Map.of("format", "pt"));
        assertThatThrownBy(() -> PeftModel.fromPretrained(new Net(manager), dir))
                .hasMessageContaining("up_proj.lora_A.weight").hasMessageContaining("(3, 6)")
                .hasMessageContaining("(2, 6)");

        // unknown key
        SafetensorsWriter.write(file, Map.of(
                "base_model.model.block.up_proj.lora_A.weight", TensorData.ofFloats(new float[12], 2, 6),
                "base_model.model.block.up_proj.lora_B.weight", TensorData.ofFloats(new float[10], 5, 2),
                "base_model.model.block.gate_proj.lora_A.weight", TensorData.ofFloats(new float[12], 2, 6)),
                Map.of("format", "pt"));
        assertThatThrownBy(() -> PeftModel.fromPretrained(new Net(manager), dir))
                .hasMessageContaining("gate_proj.lora_A.weight");

        // missing key
        SafetensorsWriter.write(file, Map.of(
                "base_model.model.block.up_proj.lora_A.weight", TensorData.ofFloats(new float[12], 2, 6)),
                Map.of("format", "pt"));
        assertThatThrownBy(() -> PeftModel.fromPretrained(new Net(manager), dir))
                .hasMessageContaining("missing adapter keys").hasMessageContaining("up_proj.lora_B.weight");

        // NaN in the file
        float[] nan = new float[10];
        nan[4] = Float.NaN;
        SafetensorsWriter.write(file, Map.of(
                "base_model.model.block.up_proj.lora_A.weight", TensorData.ofFloats(new float[12], 2, 6),
                "base_model.model.block.up_proj.lora_B.weight", TensorData.ofFloats(nan, 5, 2)),
                Map.of("format", "pt"));
        assertThatThrownBy(() -> PeftModel.fromPretrained(new Net(manager), dir))
                .hasMessageContaining("up_proj.lora_B.weight").hasMessageContaining("NaN");
    }

    @Test
    void trainingChangesOnlyAdaptersAndBiasModesSelectBiases() {
        Net net = new Net(manager);
        float[] frozen = net.getParameter("block.up_proj.weight").data().toFloatArray();
        LoraConfig c = LoraConfig.builder().r(2).loraAlpha(4).targetModules("up_proj")
                .bias(LoraConfig.Bias.LORA_ONLY).build();
        PeftModel peft = PeftModel.getPeftModel(net, c);
        assertThat(peft.trainableParameters()).hasSize(3);
        assertThat(peft.tuner().adapterStateDict("default", "base_model.").keySet())
                .contains("base_model.model.block.up_proj.base_layer.bias");
        NDArray x = manager.randomNormal(new Shape(16, 6));
        NDArray y = manager.randomInteger(0, 3, new Shape(16), DataType.INT64);
        AdamW opt = AdamW.builder().lr(1e-2f).build();
        float first = 0;
        float last = 0;
        for (int i = 0; i < 50; i++) {
            float l = TrainStep.run(() -> F.crossEntropy(peft.forward(x), y, -100), opt,
                    peft.trainableParameters()).loss();
            if (i == 0) {
                first = l;
            }
            last = l;
        }
        assertThat(last).isLessThan(first);
        assertThat(peft.baseModel().getParameter("block.up_proj.base_layer.weight").data().toFloatArray())
                .containsExactly(frozen);

        LoraConfig all = LoraConfig.builder().r(2).targetModules("up_proj").bias(LoraConfig.Bias.ALL).build();
        PeftModel p2 = PeftModel.getPeftModel(new Net(manager), all);
        // lora A/B (12 + 10) + biases of up_proj (5) and head (3)
        assertThat(p2.getNbTrainableParameters()[0]).isEqualTo(30);
    }

    @Test
    void secondAdapterIsInactiveUntilSetAndCanBeDeleted() {
        Net net = new Net(manager);
        NDArray x = manager.randomNormal(new Shape(3, 6));
        PeftModel peft = PeftModel.getPeftModel(net, config("up_proj"));
        randomizeB(peft, manager);
        float[] first = run(peft, x);
        peft.addAdapter("other", config("up_proj"));
        assertThat(run(peft, x)).containsExactly(first);
        peft.setAdapter("other");
        assertThat(run(peft, x)).isNotEqualTo(first);
        peft.deleteAdapter("other");
        assertThat(peft.activeAdapter()).isEqualTo("default");
        assertThat(run(peft, x)).containsExactly(first);
        assertThatThrownBy(() -> peft.addAdapter("default", config("up_proj"))).hasMessageContaining("already exists");
        List<String> layers = List.copyOf(peft.tuner().tunerLayers().keySet());
        assertThat(layers).containsExactly("block.up_proj");
    }

    /** 12 blocks of up/down projections and a head: 24 full target paths are condensed to their two suffixes. */
    @Test
    void twentyOrMoreTargetsAreSavedInTheirMinimalSuffixForm() {
        Module net = new Module() {
            {
                for (int i = 0; i < 12; i++) {
                    Module block = registerModule("block" + i, new Holder());
                    block.setChild("up_proj", new Linear(manager, 4, 4, true));
                    block.setChild("down_proj", new Linear(manager, 4, 4, true));
                }
                registerModule("head", new Linear(manager, 4, 2, true));
            }
        };
        List<String> full = new java.util.ArrayList<>();
        for (int i = 0; i < 12; i++) {
            full.add("block" + i + ".up_proj");
            full.add("block" + i + ".down_proj");
        }
        PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).targetModules(full).build());
        LoraConfig saved = (LoraConfig) peft.peftConfig().get("default");
        assertThat(saved.targetModules().names()).containsExactlyInAnyOrder("down_proj", "up_proj");
        assertThat(peft.tuner().tunerLayers()).hasSize(24).doesNotContainKey("head");
    }

    /** peft sets fan_in_fan_out to false for a Linear target, in the layer and in the config it saves. */
    @Test
    void fanInFanOutOnALinearIsCorrectedInTheStoredConfig() {
        Net net = new Net(manager);
        PeftModel peft = PeftModel.getPeftModel(net, LoraConfig.builder().r(2).fanInFanOut(true)
                .targetModules("up_proj").build());
        assertThat(((LoraConfig) peft.peftConfig().get("default")).fanInFanOut()).isFalse();
        assertThat(((LoraLinear) net.getSubmodule("block.up_proj")).fanInFanOut()).isFalse();
    }
}
