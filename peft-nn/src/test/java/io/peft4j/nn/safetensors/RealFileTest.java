package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reads a model written by Python safetensors (shared reference data, absent on some machines). */
class RealFileTest {
  @TempDir Path dir;

  static Path sharedLlama() {
    String rel = "hf-reference/models/llama/model.safetensors";
    String prop = System.getProperty("peft4j.shared");
    Path[] candidates = {
      prop == null ? null : Paths.get(prop, rel), Paths.get("../../shared", rel), Paths.get("../shared", rel)
    };
    for (Path p : candidates) {
      if (p != null && Files.isRegularFile(p)) {
        return p;
      }
    }
    return null;
  }

  @Test
  void opensReferenceLlamaAndRewritesItByteIdentically() throws IOException {
    Path f = sharedLlama();
    Assumptions.assumeTrue(f != null,
        "shared/hf-reference/models/llama/model.safetensors not found (set -Dpeft4j.shared)");
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.metadata()).containsEntry("format", "pt");
      TensorInfo e = sf.info("model.embed_tokens.weight");
      assertThat(e.dtype()).isEqualTo(DType.F32);
      assertThat(e.shape()).containsExactly(256, 64);
      assertThat(sf.toFloatArray("model.embed_tokens.weight")).hasSize(256 * 64);
      assertThat(sf.names()).contains("lm_head.weight", "model.layers.0.input_layernorm.weight");

      // Python wrote this file with the Rust writer, so our writer must reproduce it exactly.
      Map<String, TensorData> all = new LinkedHashMap<>();
      for (String n : sf.names()) {
        TensorInfo t = sf.info(n);
        all.put(n, TensorData.of(t.dtype(), t.shape(), sf.bytes(n)));
      }
      Path copy = dir.resolve("copy.safetensors");
      SafetensorsWriter.write(copy, all, sf.metadata());
      assertThat(Files.readAllBytes(copy)).isEqualTo(Files.readAllBytes(f));
    }
  }
}
