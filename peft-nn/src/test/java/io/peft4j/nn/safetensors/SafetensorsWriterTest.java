package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsWriterTest {
  @TempDir Path dir;

  private static final String WORKED_HEADER =
      "{\"__metadata__\":{\"format\":\"pt\"},\"base_model.model.lin.lora_A.weight\":{\"dtype\":\"F32\","
          + "\"shape\":[2,4],\"data_offsets\":[0,32]},\"base_model.model.lin.lora_B.weight\":{\"dtype\":"
          + "\"F32\",\"shape\":[3,2],\"data_offsets\":[32,56]}}";

  private static final float[] A = {0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f};
  private static final float[] B = {-1f, 0.5f, 1e-3f, 3.25f, -7f, 100f};

  private Map<String, TensorData> workedTensors() {
    // Insert B first: the file order must not depend on map iteration order.
    Map<String, TensorData> t = new LinkedHashMap<>();
    t.put("base_model.model.lin.lora_B.weight", TensorData.ofFloats(B, 3, 2));
    t.put("base_model.model.lin.lora_A.weight", TensorData.ofFloats(A, 2, 4));
    return t;
  }

  @Test
  void workedExampleIsByteExact() throws IOException {
    Path f = dir.resolve("adapter_model.safetensors");
    SafetensorsWriter.write(f, workedTensors(), Map.of("format", "pt"));
    byte[] bytes = Files.readAllBytes(f);

    assertThat(WORKED_HEADER.length()).isEqualTo(211);
    assertThat(bytes).hasSize(280);
    assertThat(Arrays.copyOfRange(bytes, 0, 8)).containsExactly(0xd8, 0, 0, 0, 0, 0, 0, 0);
    String header = new String(bytes, 8, 216, StandardCharsets.UTF_8);
    assertThat(header).isEqualTo(WORKED_HEADER + "     ");
    byte[] expectedData = RawFiles.concat(RawFiles.floatsLE(A), RawFiles.floatsLE(B));
    assertThat(Arrays.copyOfRange(bytes, 224, 280)).isEqualTo(expectedData);
    // Whole file equals the independently hand-built one.
    assertThat(bytes).isEqualTo(RawFiles.build(WORKED_HEADER, expectedData));
  }

  @Test
  void noMetadataMeansNoMetadataKey() throws IOException {
    Path f = dir.resolve("x.safetensors");
    SafetensorsWriter.write(f, Map.of("w", TensorData.ofFloats(new float[] {1f}, 1)), null);
    byte[] bytes = Files.readAllBytes(f);
    String json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    assertThat(bytes).isEqualTo(RawFiles.build(json, RawFiles.floatsLE(1f)));

    SafetensorsWriter.write(f, Map.of("w", TensorData.ofFloats(new float[] {1f}, 1)), Map.of());
    assertThat(Files.readAllBytes(f)).isEqualTo(RawFiles.build(json, RawFiles.floatsLE(1f)));
  }

  @Test
  void emptyTensorMapWritesEmptyObject() throws IOException {
    Path f = dir.resolve("empty.safetensors");
    SafetensorsWriter.write(f, Map.of(), null);
    assertThat(Files.readAllBytes(f)).isEqualTo(RawFiles.build("{}", new byte[0]));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.names()).isEmpty();
    }
  }

  private static TensorData one(DType dt) {
    return TensorData.of(dt, new long[] {1}, new byte[dt.byteSize()]);
  }

  @Test
  void ordersByDtypeDescendingThenUtf8Name() throws IOException {
    Map<String, TensorData> t = new HashMap<>();
    t.put("a", one(DType.BOOL));
    t.put("b", one(DType.F32));
    t.put("c", one(DType.I64));
    t.put("d", one(DType.BF16));
    t.put("e", one(DType.F16));
    t.put("f", one(DType.U8));
    t.put("g", one(DType.I8));
    t.put("h", one(DType.I16));
    t.put("i", one(DType.I32));
    t.put("j", one(DType.F64));
    t.put("B", one(DType.F32));
    t.put("a2", one(DType.F32));
    // UTF-16 order would put U+1F600 (surrogates 0xD83D..) before U+FFFD; UTF-8 byte order is reverse.
    t.put("\uFFFD", one(DType.F32));
    t.put("\uD83D\uDE00", one(DType.F32));
    Path f = dir.resolve("order.safetensors");
    SafetensorsWriter.write(f, t, null);

    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.names()).containsExactly("c", "j", "B", "a2", "b", "\uFFFD", "\uD83D\uDE00", "i",
          "d", "e", "h", "g", "f", "a");
    }
    byte[] bytes = Files.readAllBytes(f);
    long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
    assertThat(header).startsWith("{\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        + "\"j\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
        + "\"B\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},");
    assertThat(header.stripTrailing()).endsWith(
        "\"f\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[47,48]},"
            + "\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[48,49]}}");
  }

  @Test
  void escapesNamesLikeSerdeJson() throws IOException {
    Path f = dir.resolve("esc.safetensors");
    String name = "q\"b\\s\n\u0001é";
    SafetensorsWriter.write(f, Map.of(name, TensorData.ofFloats(new float[0], 0)), Map.of("k", "v\t"));
    String json = "{\"__metadata__\":{\"k\":\"v\\t\"},\"q\\\"b\\\\s\\n\\u0001é\":{\"dtype\":\"F32\","
        + "\"shape\":[0],\"data_offsets\":[0,0]}}";
    assertThat(Files.readAllBytes(f)).isEqualTo(RawFiles.build(json, new byte[0]));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.names()).containsExactly(name);
      assertThat(sf.metadata()).containsEntry("k", "v\t");
    }
  }

  private static List<String> listing(Path d) throws IOException {
    try (Stream<Path> s = Files.list(d)) {
      return s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
    }
  }

  @Test
  void failureMidwayLeavesOldFileAndNoTemp() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, workedTensors(), Map.of("format", "pt"));
    byte[] before = Files.readAllBytes(f);

    Map<String, TensorData> bigger = new LinkedHashMap<>();
    bigger.put("x", TensorData.ofFloats(new float[1000], 1000));
    bigger.put("y", TensorData.ofFloats(new float[1000], 1000));
    assertThatThrownBy(() -> SafetensorsWriter.write(f, bigger, null, name -> {
      throw new IOException("disk full (injected) after " + name);
    })).isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors")
        .hasMessageContaining("disk full (injected) after x");

    assertThat(Files.readAllBytes(f)).isEqualTo(before);
    assertThat(listing(dir)).containsExactly("model.safetensors");
  }

  @Test
  void runtimeFailureMidwayAlsoCleansUp() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, workedTensors(), null);
    byte[] before = Files.readAllBytes(f);
    assertThatThrownBy(() -> SafetensorsWriter.write(f, workedTensors(), null, name -> {
      throw new IllegalStateException("boom");
    })).isInstanceOf(IllegalStateException.class);
    assertThat(Files.readAllBytes(f)).isEqualTo(before);
    assertThat(listing(dir)).containsExactly("model.safetensors");
  }

  @Test
  void invalidInputLeavesOldFileAndNoTemp() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, workedTensors(), null);
    byte[] before = Files.readAllBytes(f);

    Map<String, TensorData> bad = new LinkedHashMap<>(workedTensors());
    bad.put("__metadata__", TensorData.ofFloats(new float[] {1f}, 1));
    assertThatThrownBy(() -> SafetensorsWriter.write(f, bad, null))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors")
        .hasMessageContaining("'__metadata__' is reserved");

    Map<String, String> badMeta = new HashMap<>();
    badMeta.put("k", null);
    assertThatThrownBy(() -> SafetensorsWriter.write(f, workedTensors(), badMeta))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors")
        .hasMessageContaining("must not be null");

    assertThat(Files.readAllBytes(f)).isEqualTo(before);
    assertThat(listing(dir)).containsExactly("model.safetensors");
  }

  @Test
  void missingParentDirectoryFailsWithFileName() {
    Path f = dir.resolve("nope").resolve("model.safetensors");
    assertThatThrownBy(() -> SafetensorsWriter.write(f, workedTensors(), null))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining("model.safetensors")
        .hasMessageContaining("write failed");
    assertThat(Files.exists(dir.resolve("nope"))).isFalse();
  }

  @Test
  void successfulOverwriteReplacesContent() throws IOException {
    Path f = dir.resolve("model.safetensors");
    SafetensorsWriter.write(f, workedTensors(), null);
    SafetensorsWriter.write(f, Map.of("z", TensorData.ofFloats(new float[] {9f}, 1)), null);
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.names()).containsExactly("z");
      assertThat(sf.toFloatArray("z")).containsExactly(9f);
    }
    assertThat(listing(dir)).containsExactly("model.safetensors");
  }
}
