package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ShardedSafetensorsTest {
  @TempDir Path dir;

  /** Four F32 tensors of 16, 16, 40 and 8 bytes: 80 bytes in all. */
  private static Map<String, TensorData> tensors() {
    Map<String, TensorData> t = new LinkedHashMap<>();
    t.put("layer.0.w", TensorData.ofFloats(new float[] {1, 2, 3, 4}, 2, 2));
    t.put("layer.0.b", TensorData.ofFloats(new float[] {5, 6, 7, 8}, 4));
    t.put("layer.1.w", TensorData.ofFloats(new float[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10));
    t.put("embed", TensorData.ofFloats(new float[] {-1, -2}, 2));
    return t;
  }

  private List<String> listing() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
    }
  }

  @Test
  void writesShardsAndIndexThenReadsThemBack() throws IOException {
    ShardedSafetensors.writeSharded(dir, tensors(), Map.of("format", "pt"), 32);
    // Greedy: [layer.0.w, layer.0.b] = 32, [layer.1.w] = 40 (over the limit, alone), [embed] = 8.
    assertThat(listing()).containsExactly("model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
        "model.safetensors.index.json");
    String index = Files.readString(dir.resolve("model.safetensors.index.json"));
    assertThat(index).isEqualTo("{\n"
        + "  \"metadata\": {\n"
        + "    \"total_size\": 80\n"
        + "  },\n"
        + "  \"weight_map\": {\n"
        + "    \"embed\": \"model-00003-of-00003.safetensors\",\n"
        + "    \"layer.0.b\": \"model-00001-of-00003.safetensors\",\n"
        + "    \"layer.0.w\": \"model-00001-of-00003.safetensors\",\n"
        + "    \"layer.1.w\": \"model-00002-of-00003.safetensors\"\n"
        + "  }\n"
        + "}\n");

    for (Path source : List.of(dir, dir.resolve("model.safetensors.index.json"))) {
      try (ShardedSafetensors s = ShardedSafetensors.open(source)) {
        assertThat(s.names()).containsExactly("embed", "layer.0.b", "layer.0.w", "layer.1.w");
        assertThat(s.metadata()).containsEntry("total_size", "80");
        assertThat(s.shards()).hasSize(3);
        assertThat(s.contains("embed")).isTrue();
        assertThat(s.contains("nope")).isFalse();
        assertThat(s.shardOf("layer.1.w").path().getFileName().toString())
            .isEqualTo("model-00002-of-00003.safetensors");
        assertThat(s.shardOf("layer.0.b")).isSameAs(s.shardOf("layer.0.w"));
        assertThat(s.shardOf("embed").metadata()).containsEntry("format", "pt");
        assertThat(s.info("layer.0.w").shape()).containsExactly(2, 2);
        assertThat(s.toFloatArray("layer.0.b")).containsExactly(5f, 6f, 7f, 8f);
        assertThat(s.toFloatArray("embed")).containsExactly(-1f, -2f);
        assertThatThrownBy(() -> s.info("nope")).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("'nope'");
        try (ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager()) {
          assertThat(s.toNDArray("layer.1.w", m).toFloatArray()).hasSize(10).startsWith(0f, 1f);
        }
      }
    }
  }

  @Test
  void writesSingleFileWhenItFitsAndRemovesStaleShards() throws IOException {
    ShardedSafetensors.writeSharded(dir, tensors(), Map.of("format", "pt"), 32);
    ShardedSafetensors.writeSharded(dir, tensors(), Map.of("format", "pt"), 80);
    assertThat(listing()).containsExactly("model.safetensors");
    try (ShardedSafetensors s = ShardedSafetensors.open(dir)) {
      assertThat(s.shards()).hasSize(1);
      assertThat(s.names()).containsExactlyInAnyOrder("embed", "layer.0.b", "layer.0.w", "layer.1.w");
      assertThat(s.metadata()).containsExactly(Map.entry("format", "pt"));
    }
    try (ShardedSafetensors s = ShardedSafetensors.open(dir.resolve("model.safetensors"))) {
      assertThat(s.toFloatArray("layer.0.w")).containsExactly(1f, 2f, 3f, 4f);
    }
    // And back to shards: the single file must go, or a loader could see two layouts.
    ShardedSafetensors.writeSharded(dir, tensors(), null, 40);
    assertThat(listing()).containsExactly("model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
        "model.safetensors.index.json");
  }

  private void writeIndex(String weightMapJson) throws IOException {
    Files.writeString(dir.resolve("model.safetensors.index.json"),
        "{\"metadata\":{\"total_size\":8},\"weight_map\":" + weightMapJson + "}", StandardCharsets.UTF_8);
  }

  @Test
  void missingShardIsReported() throws IOException {
    SafetensorsWriter.write(dir.resolve("a.safetensors"), Map.of("x", TensorData.ofFloats(new float[] {1}, 1)), null);
    writeIndex("{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}");
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors.index.json")
        .hasMessageContaining("shard 'b.safetensors'")
        .hasMessageContaining("tensor 'y'")
        .hasMessageContaining("does not exist");
  }

  @Test
  void tensorMissingFromItsShardIsReported() throws IOException {
    SafetensorsWriter.write(dir.resolve("a.safetensors"), Map.of("x", TensorData.ofFloats(new float[] {1}, 1)), null);
    writeIndex("{\"x\":\"a.safetensors\",\"z\":\"a.safetensors\"}");
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("tensor 'z'")
        .hasMessageContaining("shard 'a.safetensors'")
        .hasMessageContaining("does not contain it");
  }

  @Test
  void tensorInTwoShardsIsReported() throws IOException {
    SafetensorsWriter.write(dir.resolve("a.safetensors"), Map.of("x", TensorData.ofFloats(new float[] {1}, 1)), null);
    Map<String, TensorData> b = new LinkedHashMap<>();
    b.put("y", TensorData.ofFloats(new float[] {2}, 1));
    b.put("x", TensorData.ofFloats(new float[] {3}, 1));
    SafetensorsWriter.write(dir.resolve("b.safetensors"), b, null);
    writeIndex("{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}");
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("tensor 'x'")
        .hasMessageContaining("two shards")
        .hasMessageContaining("a.safetensors")
        .hasMessageContaining("b.safetensors");
  }

  @Test
  void duplicateWeightMapKeyAndBadIndexAreReported() throws IOException {
    SafetensorsWriter.write(dir.resolve("a.safetensors"), Map.of("x", TensorData.ofFloats(new float[] {1}, 1)), null);
    writeIndex("{\"x\":\"a.safetensors\",\"x\":\"a.safetensors\"}");
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors.index.json")
        .hasMessageContaining("'x'");
    Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\":{}}");
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("weight_map");
  }

  @Test
  void emptyDirectoryIsReported() {
    assertThatThrownBy(() -> ShardedSafetensors.open(dir))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining(dir.toString())
        .hasMessageContaining("model.safetensors");
  }
}
