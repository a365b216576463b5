package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.safetensors.DType;
import io.peft4j.nn.safetensors.HalfFloats;
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

import static io.peft4j.transformers.llama.LlamaTestSupport.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Loading checkpoints: bad keys and shapes fail by name; half types widen; tied heads may be absent. */
class LlamaCheckpointTest {
    @TempDir
    Path tmp;

    /** Writes the reference checkpoint, edited, as a model directory. */
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

    @Test
    void missingKeyIsNamed() throws IOException {
        Path dir = checkpoint(t -> t.remove("model.layers.1.mlp.up_proj.weight"));
        assertThatThrownBy(() -> LlamaForCausalLM.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("missing keys [model.layers.1.mlp.up_proj.weight]")
                .hasMessageContaining("unexpected keys []");
    }

    @Test
    void unexpectedKeyIsNamed() throws IOException {
        Path dir = checkpoint(t -> t.put("model.layers.0.self_attn.extra.weight", TensorData.ofFloats(new float[4], 4)));
        assertThatThrownBy(() -> LlamaForCausalLM.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unexpected keys [model.layers.0.self_attn.extra.weight]");
    }

    @Test
    void wrongShapeNamesKeyAndBothShapes() throws IOException {
        Path dir = checkpoint(t -> t.put("model.norm.weight", TensorData.ofFloats(new float[63], 63)));
        assertThatThrownBy(() -> LlamaForCausalLM.fromPretrained(dir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'model.norm.weight'")
                .hasMessageContaining("(63)")
                .hasMessageContaining("(64)");
    }

    @Test
    void legacyRotaryInvFreqIsIgnored() throws Exception {
        Path dir = checkpoint(t -> t.put("model.layers.0.self_attn.rotary_emb.inv_freq",
                TensorData.ofFloats(new float[8], 8)));
        try (LlamaForCausalLM m = LlamaForCausalLM.fromPretrained(dir)) {
            assertThat(m.stateDict()).doesNotContainKey("model.layers.0.self_attn.rotary_emb.inv_freq");
        }
    }

    @Test
    void bf16AndF16CheckpointsAreWidenedToFloat32() throws Exception {
        Path dir = checkpoint(t -> {
            t.replaceAll((k, v) -> v.toDType(k.contains("mlp") ? DType.F16 : DType.BF16));
        });
        float[] original;
        try (SafetensorsFile f = SafetensorsFile.open(modelDir().resolve("model.safetensors"))) {
            original = f.toFloatArray("model.embed_tokens.weight");
        }
        try (LlamaForCausalLM m = LlamaForCausalLM.fromPretrained(dir)) {
            NDArray w = m.getParameter("model.embed_tokens.weight").data();
            assertThat(w.getDataType()).isEqualTo(ai.djl.ndarray.types.DataType.FLOAT32);
            float[] loaded = w.toFloatArray();
            for (int i = 0; i < loaded.length; i++) {
                assertThat(loaded[i]).isEqualTo(HalfFloats.bf16ToFloat(HalfFloats.floatToBf16(original[i]) & 0xffff));
            }
            assertThat(m.getParameter("model.layers.0.mlp.up_proj.weight").data().getDataType())
                    .isEqualTo(ai.djl.ndarray.types.DataType.FLOAT32);
        }
    }

    @Test
    void tiedModelLoadsWithoutLmHeadAndRoundTripsThroughStateDict() throws Exception {
        LlamaConfig cfg = LlamaConfig.builder().vocabSize(40).hiddenSize(16).intermediateSize(24)
                .numHiddenLayers(2).numAttentionHeads(2).numKeyValueHeads(1).tieWordEmbeddings(true).build();
        Path dir = Files.createDirectories(tmp.resolve("tied"));
        Files.writeString(dir.resolve("config.json"), cfg.modelConfig().toJsonString());
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            LlamaForCausalLM original = new LlamaForCausalLM(nd, cfg);
            SafetensorsWriter.write(dir.resolve("model.safetensors"),
                    Checkpoints.toTensorData(original.stateDict()), Map.of("format", "pt"));
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
                assertThat(f.names()).doesNotContain("lm_head.weight").contains("model.embed_tokens.weight");
            }
            try (LlamaForCausalLM loaded = LlamaForCausalLM.fromPretrained(dir)) {
                assertThat(loaded.isTied()).isTrue();
                NDArray input = nd.create(new long[] {3, 1, 4, 1, 5, 9}, new Shape(2, 3));
                assertThat(loaded.forward(ModelInput.of(input)).logits().toFloatArray())
                        .containsExactly(original.forward(ModelInput.of(input)).logits().toFloatArray());
            }
        }
    }
}
