package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SafetensorsFileTest {
  @TempDir Path dir;

  private static final String HAND_HEADER =
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          + "\"__metadata__\":{\"format\":\"pt\",\"a\":\"b\"},"
          + "\"ids\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}";

  private static byte[] handData() {
    ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
    b.putFloat(1.5f).putFloat(-2f).putLong(42L);
    return b.array();
  }

  @Test
  void readsHandBuiltFile() throws IOException {
    Path f = RawFiles.write(dir, "hand.safetensors", RawFiles.build(HAND_HEADER, handData()));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.path()).isEqualTo(f);
      assertThat(sf.names()).containsExactly("w", "ids");
      assertThat(sf.metadata()).containsExactly(Map.entry("format", "pt"), Map.entry("a", "b"));
      assertThat(sf.contains("w")).isTrue();
      assertThat(sf.contains("nope")).isFalse();
      TensorInfo w = sf.info("w");
      assertThat(w.name()).isEqualTo("w");
      assertThat(w.dtype()).isEqualTo(DType.F32);
      assertThat(w.shape()).containsExactly(2);
      assertThat(w.begin()).isEqualTo(0);
      assertThat(w.end()).isEqualTo(8);
      assertThat(w.numel()).isEqualTo(2);
      assertThat(w.byteSize()).isEqualTo(8);
      assertThat(sf.toFloatArray("w")).containsExactly(1.5f, -2f);
      TensorInfo ids = sf.info("ids");
      assertThat(ids.shape()).isEmpty();
      assertThat(ids.numel()).isEqualTo(1);
      assertThat(sf.toLongArray("ids")).containsExactly(42L);
      ByteBuffer b = sf.bytes("w");
      assertThat(b.isReadOnly()).isTrue();
      assertThat(b.order()).isEqualTo(ByteOrder.LITTLE_ENDIAN);
      assertThat(b.remaining()).isEqualTo(8);
      assertThat(b.getFloat(4)).isEqualTo(-2f);
      assertThatThrownBy(() -> sf.info("nope"))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("hand.safetensors")
          .hasMessageContaining("'nope'");
      assertThatThrownBy(() -> sf.toLongArray("w"))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("'w'");
    }
  }

  @Test
  void infoShapeIsACopy() throws IOException {
    Path f = RawFiles.write(dir, "hand.safetensors", RawFiles.build(HAND_HEADER, handData()));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      sf.info("w").shape()[0] = 99;
      assertThat(sf.info("w").shape()).containsExactly(2);
    }
  }

  @Test
  void acceptsNullMetadataAndExtraPadding() throws IOException {
    String h = "{\"__metadata__\":null,\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    byte[] hb = h.getBytes(StandardCharsets.UTF_8);
    Path f = RawFiles.write(dir, "pad.safetensors", RawFiles.buildRaw(hb.length + 21, hb, 21, new byte[] {7}));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.metadata()).isEmpty();
      assertThat(sf.toLongArray("x")).containsExactly(7L);
    }
  }

  private static byte[] le(DType dt, long... values) {
    ByteBuffer b = ByteBuffer.allocate(values.length * dt.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
    for (long v : values) {
      switch (dt.byteSize()) {
        case 1: b.put((byte) v); break;
        case 2: b.putShort((short) v); break;
        case 4: b.putInt((int) v); break;
        default: b.putLong(v);
      }
    }
    return b.array();
  }

  @Test
  void roundTripsEveryDtypeIncludingScalarsAndEmpty() throws IOException {
    Map<String, TensorData> t = new LinkedHashMap<>();
    Map<String, byte[]> raw = new LinkedHashMap<>();
    raw.put("f64", le(DType.F64, Double.doubleToRawLongBits(1.25), Double.doubleToRawLongBits(-3.0)));
    raw.put("f32", le(DType.F32, Float.floatToRawIntBits(0.5f), Float.floatToRawIntBits(-8f)));
    raw.put("f16", le(DType.F16, 0x3C00, 0xC100));
    raw.put("bf16", le(DType.BF16, 0x3F80, 0xC020));
    raw.put("i64", le(DType.I64, Long.MIN_VALUE, 7));
    raw.put("i32", le(DType.I32, -5, Integer.MAX_VALUE));
    raw.put("i16", le(DType.I16, -300, 300));
    raw.put("i8", le(DType.I8, -1, 127));
    raw.put("u8", le(DType.U8, 255, 1));
    raw.put("bool", le(DType.BOOL, 1, 0));
    DType[] types = {DType.F64, DType.F32, DType.F16, DType.BF16, DType.I64, DType.I32, DType.I16,
        DType.I8, DType.U8, DType.BOOL};
    int k = 0;
    for (Map.Entry<String, byte[]> e : raw.entrySet()) {
      DType dt = types[k++];
      t.put(e.getKey(), TensorData.of(dt, new long[] {2}, e.getValue()));
      t.put(e.getKey() + ".scalar", TensorData.of(dt, new long[0], Arrays.copyOf(e.getValue(), dt.byteSize())));
      t.put(e.getKey() + ".empty", TensorData.of(dt, new long[] {0, 3}, new byte[0]));
    }
    Path f = dir.resolve("all.safetensors");
    SafetensorsWriter.write(f, t, Map.of("format", "pt"));
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.names()).containsExactlyInAnyOrderElementsOf(t.keySet());
      k = 0;
      for (Map.Entry<String, byte[]> e : raw.entrySet()) {
        DType dt = types[k++];
        String n = e.getKey();
        assertThat(sf.info(n).dtype()).isEqualTo(dt);
        assertThat(sf.info(n).shape()).containsExactly(2);
        assertThat(bytesOf(sf.bytes(n))).as(n).isEqualTo(e.getValue());
        assertThat(sf.info(n + ".scalar").shape()).isEmpty();
        assertThat(bytesOf(sf.bytes(n + ".scalar"))).isEqualTo(Arrays.copyOf(e.getValue(), dt.byteSize()));
        assertThat(sf.info(n + ".empty").shape()).containsExactly(0, 3);
        assertThat(sf.info(n + ".empty").byteSize()).isZero();
        assertThat(sf.bytes(n + ".empty").remaining()).isZero();
        assertThat(sf.toFloatArray(n + ".empty")).isEmpty();
      }
      assertThat(sf.toFloatArray("f64")).containsExactly(1.25f, -3f);
      assertThat(sf.toFloatArray("f32")).containsExactly(0.5f, -8f);
      assertThat(sf.toFloatArray("f16")).containsExactly(1f, -2.5f);
      assertThat(sf.toFloatArray("bf16")).containsExactly(1f, -2.5f);
      assertThat(sf.toFloatArray("bf16.scalar")).containsExactly(1f);
      assertThat(sf.toFloatArray("i16")).containsExactly(-300f, 300f);
      assertThat(sf.toLongArray("i64")).containsExactly(Long.MIN_VALUE, 7L);
      assertThat(sf.toLongArray("i32")).containsExactly(-5L, Integer.MAX_VALUE);
      assertThat(sf.toLongArray("i16")).containsExactly(-300L, 300L);
      assertThat(sf.toLongArray("i8")).containsExactly(-1L, 127L);
      assertThat(sf.toLongArray("u8")).containsExactly(255L, 1L);
      assertThat(sf.toLongArray("bool")).containsExactly(1L, 0L);
      assertThat(sf.toFloatArray("u8")).containsExactly(255f, 1f);
    }
  }

  static byte[] bytesOf(ByteBuffer b) {
    byte[] out = new byte[b.remaining()];
    b.duplicate().get(out);
    return out;
  }

  /** Tensors a (12 B), b (12 B), c (40 B), d (4 B), e (0 B) as F32, values 0..16 in order. */
  private Path chunkFile() throws IOException {
    String h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
        + "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
        + "\"c\":{\"dtype\":\"F32\",\"shape\":[2,5],\"data_offsets\":[24,64]},"
        + "\"d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[64,68]},"
        + "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[68,68]}}";
    float[] v = new float[17];
    for (int i = 0; i < v.length; i++) {
      v[i] = i;
    }
    return RawFiles.write(dir, "chunks.safetensors", RawFiles.build(h, RawFiles.floatsLE(v)));
  }

  private static void assertChunkValues(SafetensorsFile sf) {
    assertThat(sf.toFloatArray("a")).containsExactly(0f, 1f, 2f);
    assertThat(sf.toFloatArray("b")).containsExactly(3f, 4f, 5f);
    assertThat(sf.toFloatArray("c")).containsExactly(6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f);
    assertThat(sf.toFloatArray("d")).containsExactly(16f);
    assertThat(sf.toFloatArray("e")).isEmpty();
  }

  @Test
  void smallChunksNeverSplitATensor() throws IOException {
    Path f = chunkFile();
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.mappingCount()).isEqualTo(1);
      assertChunkValues(sf);
    }
    // With 16-byte chunks, b would straddle the boundary at 16 and c is bigger than a chunk:
    // a | b | c | d+e  -> four mappings, every tensor still one contiguous slice.
    try (SafetensorsFile sf = SafetensorsFile.open(f, 16, Integer.MAX_VALUE)) {
      assertThat(sf.mappingCount()).isEqualTo(4);
      assertChunkValues(sf);
      assertThat(sf.bytes("c").remaining()).isEqualTo(40);
      assertThat(sf.bytes("c").getFloat(36)).isEqualTo(15f);
      assertThat(sf.bytes("b").getFloat(0)).isEqualTo(3f);
    }
    try (SafetensorsFile sf = SafetensorsFile.open(f, 24, Integer.MAX_VALUE)) {
      assertThat(sf.mappingCount()).isEqualTo(3); // a+b | c | d+e
      assertChunkValues(sf);
    }
  }

  @Test
  void tensorsTooLargeToMapAreStreamed() throws IOException {
    Path f = chunkFile();
    try (SafetensorsFile sf = SafetensorsFile.open(f, 16, 16);
        ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager()) {
      assertThat(sf.mappingCount()).isEqualTo(3); // c is left unmapped
      assertThatThrownBy(() -> sf.bytes("c"))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("chunks.safetensors")
          .hasMessageContaining("'c'")
          .hasMessageContaining("too large");
      assertChunkValues(sf); // c is read in 16-byte pieces
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      sf.transferTo("c", Channels.newChannel(out));
      assertThat(out.toByteArray()).isEqualTo(RawFiles.floatsLE(6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f));
      out.reset();
      sf.transferTo("b", Channels.newChannel(out));
      assertThat(out.toByteArray()).isEqualTo(RawFiles.floatsLE(3f, 4f, 5f));
      assertThat(sf.toNDArray("c", m).toFloatArray())
          .containsExactly(6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f);
    }
  }

  @Test
  void closedFileRejectsAccess() throws IOException {
    Path f = chunkFile();
    SafetensorsFile sf = SafetensorsFile.open(f);
    sf.close();
    sf.close(); // idempotent
    assertThatThrownBy(() -> sf.bytes("a")).isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("closed");
    assertThat(sf.names()).containsExactly("a", "b", "c", "d", "e");
  }

  // ---------------------------------------------------------------- malformed input

  private void assertRejected(byte[] content, String... fragments) throws IOException {
    Path f = RawFiles.write(dir, "bad.safetensors", content);
    var a = assertThatThrownBy(() -> SafetensorsFile.open(f).close())
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining(f.toString());
    for (String fr : fragments) {
      a.hasMessageContaining(fr);
    }
  }

  private static final String T8 = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";

  @Test
  void rejectsTinyFiles() throws IOException {
    assertRejected(new byte[0], "file is 0 bytes", "too small");
    assertRejected(new byte[5], "file is 5 bytes", "too small");
  }

  @Test
  void rejectsHeaderLengthPastEnd() throws IOException {
    byte[] h = "{}".getBytes(StandardCharsets.UTF_8);
    assertRejected(RawFiles.buildRaw(1000, h, 6, new byte[0]), "header length 1000 exceeds file size 16");
    assertRejected(RawFiles.buildRaw(100_000_008L, h, 6, new byte[0]),
        "header length 100000008 exceeds the maximum");
    assertRejected(RawFiles.buildRaw(-1L, h, 6, new byte[0]), "header length 18446744073709551615");
  }

  @ParameterizedTest
  @ValueSource(ints = {3, 7, 8, 100, 223, 224, 240, 279})
  void rejectsTruncatedFiles(int cut) throws IOException {
    Path good = dir.resolve("good.safetensors");
    Map<String, TensorData> t = new LinkedHashMap<>();
    t.put("base_model.model.lin.lora_A.weight", TensorData.ofFloats(new float[8], 2, 4));
    t.put("base_model.model.lin.lora_B.weight", TensorData.ofFloats(new float[6], 3, 2));
    SafetensorsWriter.write(good, t, Map.of("format", "pt"));
    byte[] all = Files.readAllBytes(good);
    assertThat(all).hasSize(280);
    byte[] cutBytes = Arrays.copyOf(all, cut);
    String expected = cut < 8 ? "too small" : cut < 224 ? "header length 216 exceeds file size " + cut
        : "truncated: tensors end at data offset 56";
    assertRejected(cutBytes, expected);
  }

  @Test
  void truncationMessageNamesSizes() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]}}";
    assertRejected(RawFiles.build(h, new byte[4]), "truncated", "tensor 'a'", "data buffer has only 4 bytes");
  }

  @Test
  void rejectsNonJsonHeaders() throws IOException {
    assertRejected(RawFiles.build("not json at all", new byte[0]), "header is not valid JSON");
    assertRejected(RawFiles.build("[1,2]", new byte[0]), "header is not a JSON object");
    assertRejected(RawFiles.build("{\"a\":1", new byte[0]), "header is not valid JSON");
    assertRejected(RawFiles.build("{} {}", new byte[0]), "trailing content");
    byte[] h = "{}".getBytes(StandardCharsets.UTF_8);
    // NUL padding instead of spaces is not JSON whitespace.
    assertRejected(RawFiles.buildRaw(8, RawFiles.concat(h, new byte[6]), 0, new byte[0]),
        "header is not valid JSON");
    byte[] badUtf8 = RawFiles.concat("{\"".getBytes(StandardCharsets.UTF_8), new byte[] {(byte) 0xC3, 0x28},
        "\":1}  ".getBytes(StandardCharsets.UTF_8));
    assertRejected(RawFiles.buildRaw(8, badUtf8, 0, new byte[0]), "not valid UTF-8");
  }

  @Test
  void rejectsOverlap() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]},\"b\":" + T8 + "[4,12]}}";
    assertRejected(RawFiles.build(h, new byte[12]), "'b'", "overlap", "'a'");
  }

  @Test
  void rejectsGap() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]},\"b\":" + T8 + "[12,20]}}";
    assertRejected(RawFiles.build(h, new byte[20]), "gap", "[8, 12)", "'b'");
    String h2 = "{\"a\":" + T8 + "[4,12]}}";
    assertRejected(RawFiles.build(h2, new byte[12]), "gap", "[0, 4)", "'a'");
  }

  @Test
  void rejectsOutOfRangeOffsets() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]},\"b\":" + T8 + "[8,16]}}";
    assertRejected(RawFiles.build(h, new byte[12]), "truncated", "data offset 16", "tensor 'b'");
    String huge = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,"
        + "18446744073709551616]}}";
    assertRejected(RawFiles.build(huge, new byte[1]), "tensor 'a'", "non-negative integers");
    String neg = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}";
    assertRejected(RawFiles.build(neg, new byte[1]), "tensor 'a'", "non-negative integers");
    String three = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}";
    assertRejected(RawFiles.build(three, new byte[1]), "tensor 'a'", "[begin, end]");
    String backwards = "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}";
    assertRejected(RawFiles.build(backwards, new byte[1]), "tensor 'a'", "begin > end");
  }

  @Test
  void rejectsByteCountMismatch() throws IOException {
    String h = "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}";
    Path f = RawFiles.write(dir, "model.safetensors", RawFiles.build(h, new byte[20]));
    assertThatThrownBy(() -> SafetensorsFile.open(f))
        .isInstanceOf(SafetensorsException.class)
        .hasMessageContaining(f + ": tensor 'a.weight' has dtype F32 and shape [2, 3] (24 bytes) but "
            + "data_offsets [0, 20] span 20 bytes")
        .hasMessageContaining("byte count does not match shape");
  }

  @Test
  void rejectsBadShapes() throws IOException {
    String neg = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,0]}}";
    assertRejected(RawFiles.build(neg, new byte[0]), "tensor 'a'", "invalid dimension -2");
    String frac = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}";
    assertRejected(RawFiles.build(frac, new byte[0]), "tensor 'a'", "invalid dimension 1.5");
    String missing = "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}";
    assertRejected(RawFiles.build(missing, new byte[0]), "tensor 'a'", "'shape'");
    String notObj = "{\"a\":[1,2]}";
    assertRejected(RawFiles.build(notObj, new byte[0]), "tensor 'a'", "not a JSON object");
    String overflow = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}";
    assertRejected(RawFiles.build(overflow, new byte[0]), "tensor 'a'", "overflows");
  }

  @Test
  void rejectsDuplicateNames() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]},\"a\":" + T8 + "[8,16]}}";
    assertRejected(RawFiles.build(h, new byte[16]), "duplicate tensor name 'a'");
    String meta = "{\"__metadata__\":{},\"__metadata__\":{}}";
    assertRejected(RawFiles.build(meta, new byte[0]), "duplicate key '__metadata__'");
    String inner = "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assertRejected(RawFiles.build(inner, new byte[8]), "not valid JSON", "dtype");
  }

  @Test
  void rejectsUnknownDtype() throws IOException {
    String h = "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    assertRejected(RawFiles.build(h, new byte[1]), "tensor 'a'", "dtype 'Q4_K'");
    String f8 = "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    assertRejected(RawFiles.build(f8, new byte[1]), "tensor 'a'", "unsupported dtype 'F8_E4M3'");
  }

  @Test
  void rejectsTrailingGarbage() throws IOException {
    String h = "{\"a\":" + T8 + "[0,8]}}";
    assertRejected(RawFiles.build(h, new byte[11]), "3 trailing bytes");
    assertRejected(RawFiles.build("{}", new byte[1]), "1 trailing bytes");
  }

  @Test
  void rejectsNonStringMetadata() throws IOException {
    String h = "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}";
    assertRejected(RawFiles.build(h, new byte[0]), "__metadata__", "'step'", "not a string");
    String notObj = "{\"__metadata__\":\"pt\"}";
    assertRejected(RawFiles.build(notObj, new byte[0]), "__metadata__ is not a JSON object");
  }

  @Test
  void dtypeNamesRoundTripAndUnknownIsRejected() throws SafetensorsException {
    for (DType d : DType.values()) {
      assertThat(DType.fromSafetensorsName(d.safetensorsName())).isEqualTo(d);
      assertThat(DType.fromDjl(DType.fromSafetensorsName(d.safetensorsName()).djlType()) == d
          || d == DType.F16 || d == DType.BF16 || d == DType.I16).isTrue();
    }
    assertThat(DType.BF16.byteSize()).isEqualTo(2);
    assertThat(DType.F64.byteSize()).isEqualTo(8);
    assertThat(DType.BOOL.byteSize()).isEqualTo(1);
    assertThatThrownBy(() -> DType.fromSafetensorsName("f32"))
        .isInstanceOf(SafetensorsException.class).hasMessageContaining("'f32'");
  }
}
