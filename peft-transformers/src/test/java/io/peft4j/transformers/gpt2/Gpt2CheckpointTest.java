package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.transformers.Checkpoints;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

import static io.peft4j.transformers.gpt2.Gpt2TestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Both key layouts, legacy buffers, tying, and bad checkpoints / configs failing by file and key. */
class Gpt2CheckpointTest {
    @TempDir
    Path tmp;

    /** Writes the reference checkpoint, edited, as a model directory with the reference config. */
    private Path checkpoint(Consumer<Map<String, TensorData>> edit) throws IOException {
        Map<String, TensorData> tensors = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(modelDir().resolve("model.safetensors"))) {
            for (String name : f.names()) {
                tensors.put(name, TensorData.ofFloats(f.toFloatArray(name), f.info(name).shape()));
            }
        }
        edit.accept(tensors);
        Path dir = Files.createDirectories(tmp.resolve("model"));
        Files.copy(modelDir().resolve("config.json"), dir.resolve("config.json"));
        SafetensorsWriter.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
        return dir;
    }

    private static float[] logits(Gpt2LMHeadModel m) throws IOException {
        long[][] ids = inputIds();
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            NDArray in = m.manager().create(flat(ids), new Shape(2, 10));
            return m.forward(ModelInput.of(in)).logits().toFloatArray();
        }
    }

    @Test
    void originalGpt2LayoutWithoutPrefixAndWithLegacyBuffersLoads() throws Exception {
        Path dir = checkpoint(t -> {
            Map<String, TensorData> bare = new LinkedHashMap<>();
            t.forEach((k, v) -> bare.put(k.substring("transformer.".length()), v));
            // The original gpt2 repo also stores the causal-mask buffers of every block.
            for (int i = 0; i < 2; i++) {
                bare.put("h." + i + ".attn.bias", TensorData.ofFloats(new float[64 * 64], 1, 1, 64, 64));
                bare.put("h." + i + ".attn.masked_bias", TensorData.ofFloats(new float[] {-1e4f}));
            }
            t.clear();
            t.putAll(bare);
        });
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
            assertThat(f.names()).contains("wte.weight", "h.0.attn.c_attn.weight", "h.1.attn.bias")
                    .noneMatch(n -> n.startsWith("transformer."));
        }
        try (Gpt2LMHeadModel bare = Gpt2LMHeadModel.fromPretrained(dir);
             Gpt2LMHeadModel ref = Gpt2LMHeadModel.fromPretrained(modelDir())) {
            assertThat(logits(bare)).containsExactly(logits(ref));
            assertThat(bare.stateDict()).doesNotContainKey("transformer.h.0.attn.bias");
        }
    }

    @Test
    void missingTensorIsNamedWithTheFile() throws IOException {
        Path dir = checkpoint(t -> t.remove("transformer.h.1.mlp.c_fc.weight"));
        assertThatThrownBy(() -> Gpt2LMHeadModel.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("missing keys [transformer.h.1.mlp.c_fc.weight]")
                .hasMessageContaining("unexpected keys []");
    }

    @Test
    void unexpectedTensorIsNamed() throws IOException {
        Path dir = checkpoint(t -> t.put("transformer.h.0.attn.q_attn.weight", TensorData.ofFloats(new float[4], 2, 2)));
        assertThatThrownBy(() -> Gpt2LMHeadModel.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unexpected keys [transformer.h.0.attn.q_attn.weight]");
    }

    @Test
    void wrongShapeNamesFileKeyAndBothShapes() throws IOException {
        // A Linear-layout (transposed) c_attn weight: [out, in] instead of Conv1D's [in, out].
        Path dir = checkpoint(t -> t.put("transformer.h.0.attn.c_attn.weight",
                TensorData.ofFloats(new float[192 * 64], 192, 64)));
        assertThatThrownBy(() -> Gpt2LMHeadModel.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("'transformer.h.0.attn.c_attn.weight'")
                .hasMessageContaining("(192, 64)")
                .hasMessageContaining("(64, 192)");
    }

    @Test
    void configMissingARequiredFieldNamesFileAndField() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("nocfg"));
        ObjectNode json = (ObjectNode) new ObjectMapper().readTree(modelDir().resolve("config.json").toFile());
        json.remove("n_embd");
        Files.writeString(dir.resolve("config.json"), json.toString());
        Files.copy(modelDir().resolve("model.safetensors"), dir.resolve("model.safetensors"));
        assertThatThrownBy(() -> Gpt2LMHeadModel.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(dir.resolve("config.json").toString())
                .hasMessageContaining("'n_embd'");
    }

    @Test
    void untiedHeadIsSavedAndRequired() throws Exception {
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(40).nPositions(8).nEmbd(16).nLayer(1).nHead(2)
                .tieWordEmbeddings(false).build();
        Path dir = Files.createDirectories(tmp.resolve("untied"));
        Files.writeString(dir.resolve("config.json"), cfg.modelConfig().toJsonString());
        try (NDManager nd = Torch.newManager()) {
            Gpt2LMHeadModel m = new Gpt2LMHeadModel(nd, cfg);
            assertThat(m.isTied()).isFalse();
            Map<String, NDArray> state = m.stateDict();
            assertThat(state).containsKey("lm_head.weight");
            state.remove("lm_head.weight");
            SafetensorsWriter.write(dir.resolve("model.safetensors"), Checkpoints.toTensorData(state),
                    Map.of("format", "pt"));
        }
        assertThatThrownBy(() -> Gpt2LMHeadModel.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("missing keys [lm_head.weight]");
    }

    @Test
    void tiedModelRoundTripsThroughSaveAndLoad() throws Exception {
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(40).nPositions(8).nEmbd(16).nLayer(2).nHead(2).build();
        Path dir = Files.createDirectories(tmp.resolve("tied"));
        Files.writeString(dir.resolve("config.json"), cfg.modelConfig().toJsonString());
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            Gpt2LMHeadModel original = new Gpt2LMHeadModel(nd, cfg);
            original.eval();
            assertThat(original.getParameter("lm_head.weight")).isSameAs(original.getParameter("transformer.wte.weight"));
            SafetensorsWriter.write(dir.resolve("model.safetensors"),
                    Checkpoints.toTensorData(original.stateDict()), Map.of("format", "pt"));
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
                assertThat(f.names()).doesNotContain("lm_head.weight").contains("transformer.wte.weight");
            }
            try (Gpt2LMHeadModel loaded = Gpt2LMHeadModel.fromPretrained(dir)) {
                assertThat(loaded.isTied()).isTrue();
                NDArray input = nd.create(new long[] {3, 1, 4, 1, 5, 9}, new Shape(2, 3));
                assertThat(loaded.forward(ModelInput.of(input)).logits().toFloatArray())
                        .containsExactly(original.forward(ModelInput.of(input)).logits().toFloatArray());
            }
        }
    }
}
