package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** Saving a PiSSA / OLoRA adapter converted to plain LoRA ({@link SaveOptions#pathInitialModelForWeightConversion}). */
class WeightConversionTest {
    @TempDir
    Path tmp;
    final NDManager nd = seeded(21);

    static NDManager seeded(long seed) {
        Torch.manualSeed(seed);
        return Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    private static float[] run(Module m, NDArray x) {
        return FactorInitTest.run(m, x);
    }

    private static LoraConfig.Builder config(String init) {
        return LoraConfig.builder().r(2).loraAlpha(4).targetModules("up_proj", "down_proj").initLoraWeights(init);
    }

    /** Stands in for training: every A and B moves away from its initial value. */
    private void perturb(PeftModel peft) {
        for (Param p : peft.trainableParameters()) {
            try (NDArray noise = nd.randomNormal(0f, 0.3f, p.shape(), DataType.FLOAT32)) {
                p.setData(p.data().add(noise));
            }
        }
    }

    private static SaveOptions convertAgainst(Path initial) {
        return SaveOptions.builder().pathInitialModelForWeightConversion(initial).build();
    }

    @ParameterizedTest
    @ValueSource(strings = {"pissa", "olora"})
    void convertedAdapterOnOriginalWeightsGivesTheTrainedOutput(String init) throws Exception {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        Module original = net.deepCopy();
        NDArray x = nd.randomNormal(new Shape(3, 6));
        PeftModel peft = PeftModel.getPeftModel(net, config(init).build());
        Path initDir = tmp.resolve("init");
        peft.saveAdapter(initDir);
        perturb(peft);
        float[] trained = run(peft, x);
        Path out = tmp.resolve("converted");
        peft.saveAdapter(out, convertAgainst(initDir));

        PeftModel loaded = PeftModel.fromPretrained(original, out);
        float[] got = run(loaded, x);
        for (int i = 0; i < trained.length; i++) {
            assertThat(got[i]).as("output %d", i).isCloseTo(trained[i], within(1e-5f + 1e-5f * Math.abs(trained[i])));
        }
        LoraConfig saved = (LoraConfig) PeftConfig.fromPretrained(out);
        assertThat(saved.r()).isEqualTo(4);
        assertThat(saved.loraAlpha()).isEqualTo(8);
        assertThat(saved.initLoraWeights().isTrue()).isTrue();
        try (SafetensorsFile f = SafetensorsFile.open(out.resolve("adapter_model.safetensors"))) {
            assertThat(f.info("base_model.model.block.up_proj.lora_A.weight").shape()).containsExactly(4, 6);
            assertThat(f.info("base_model.model.block.up_proj.lora_B.weight").shape()).containsExactly(5, 4);
        }
        // The initial directory is read, not rewritten.
        assertThat(PeftConfig.fromPretrained(initDir).toJson()).contains("\"init_lora_weights\": \"" + init + "\"");
    }

    @Test
    void rsloraAlphaGrowsBySqrtTwoAndPatternsDouble() throws Exception {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        LoraConfig cfg = config("pissa").loraAlpha(16).alphaPattern(Map.of("down_proj", 6)).build();
        PeftModel peft = PeftModel.getPeftModel(net, cfg);
        Path initDir = tmp.resolve("init");
        peft.saveAdapter(initDir);
        peft.saveAdapter(tmp.resolve("out"), convertAgainst(initDir));
        String json = Files.readString(tmp.resolve("out/adapter_config.json"));
        assertThat(json).contains("\"lora_alpha\": 32,").contains("\"down_proj\": 12").contains("\"r\": 4,")
                .contains("\"init_lora_weights\": true");

        PeftModel rs = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("olora").loraAlpha(16).useRslora(true).build());
        rs.saveAdapter(tmp.resolve("init-rs"));
        rs.saveAdapter(tmp.resolve("out-rs"), convertAgainst(tmp.resolve("init-rs")));
        // Python: 16 * 2 ** 0.5
        assertThat(Files.readString(tmp.resolve("out-rs/adapter_config.json"))).contains("\"lora_alpha\": 22.627416997969522,");
    }

    @Test
    void missingInitialDirectoryNamesTheFile() {
        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("pissa").build());
        Path missing = tmp.resolve("never-saved");
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(missing)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(missing.resolve("adapter_config.json").toString())
                .hasMessageContaining("before training");
        assertThat(tmp.resolve("out")).doesNotExist();
    }

    @Test
    void initialAdapterThatIsNotAMutatingInitIsRefused() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        Module copy = net.deepCopy();
        PeftModel.getPeftModel(copy, config("gaussian").build()).saveAdapter(tmp.resolve("gaussian"));
        PeftModel peft = PeftModel.getPeftModel(net, config("pissa").build());
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(tmp.resolve("gaussian"))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(tmp.resolve("gaussian/adapter_config.json").toString())
                .hasMessageContaining("init_lora_weights=gaussian");
    }

    @Test
    void trainedAdapterThatIsNotAMutatingInitIsRefused() {
        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("gaussian").build());
        peft.saveAdapter(tmp.resolve("init"));
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(tmp.resolve("init"))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("PiSSA, OLoRA").hasMessageContaining("init_lora_weights=gaussian");
    }

    @Test
    void initialAdapterWithAnotherRankIsRefusedNamingItsConfig() {
        PeftModelTest.Net net = new PeftModelTest.Net(nd);
        PeftModel.getPeftModel(net.deepCopy(), config("pissa").r(3).build()).saveAdapter(tmp.resolve("r3"));
        PeftModel peft = PeftModel.getPeftModel(net, config("pissa").build());
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(tmp.resolve("r3"))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(tmp.resolve("r3/adapter_config.json").toString())
                .hasMessageContaining("r=3").hasMessageContaining("r=2");
    }

    @Test
    void tensorShapeMismatchNamesTheWeightsFileAndKey() throws Exception {
        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd), config("pissa").build());
        Path initDir = tmp.resolve("init");
        peft.saveAdapter(initDir);
        Path weights = initDir.resolve("adapter_model.safetensors");
        Map<String, TensorData> tensors = new TreeMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(weights)) {
            for (String name : f.names()) {
                tensors.put(name, TensorData.ofFloats(f.toFloatArray(name), f.info(name).shape()));
            }
        }
        String key = "base_model.model.block.down_proj.lora_A.weight";
        tensors.put(key, TensorData.ofFloats(new float[3 * 5], 3, 5));
        SafetensorsWriter.write(weights, tensors, Map.of("format", "pt"));
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(initDir)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(weights.toString()).hasMessageContaining(key)
                .hasMessageContaining("(3, 5)");
    }

    @Test
    void rsloraWithRankPatternIsRefusedAsPeftDoes() {
        PeftModel peft = PeftModel.getPeftModel(new PeftModelTest.Net(nd),
                config("pissa").useRslora(true).rankPattern(Map.of("down_proj", 1)).build());
        peft.saveAdapter(tmp.resolve("init"));
        assertThatThrownBy(() -> peft.saveAdapter(tmp.resolve("out"), convertAgainst(tmp.resolve("init"))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("`rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`");
    }
}
