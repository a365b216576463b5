package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NDArrayConversionTest {
  @TempDir Path dir;
  NDManager manager;

  @BeforeEach
  void setUp() {
    manager = NDManager.newBaseManager();
  }

  @AfterEach
  void tearDown() {
    manager.close();
  }

  private static byte[] shortsLE(int... v) {
    ByteBuffer b = ByteBuffer.allocate(v.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int x : v) {
      b.putShort((short) x);
    }
    return b.array();
  }

  @Test
  void fileToNDArrayKeepsOrWidensTypes() throws IOException {
    Map<String, TensorData> t = new LinkedHashMap<>();
    t.put("f32", TensorData.ofFloats(new float[] {1f, 2f, 3f, 4f, 5f, 6f}, 2, 3));
    t.put("bf16", TensorData.of(DType.BF16, new long[] {2}, shortsLE(0x3F80, 0xC020)));
    t.put("f16", TensorData.of(DType.F16, new long[] {2}, shortsLE(0x7BFF, 0x0001)));
    ByteBuffer d = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putDouble(0.1).putDouble(-1e300);
    t.put("f64", TensorData.of(DType.F64, new long[] {2}, d.array()));
    t.put("i64", TensorData.ofLongs(new long[] {Long.MAX_VALUE, -1}, 2));
    t.put("i32", TensorData.of(DType.I32, new long[] {1}, new byte[] {(byte) 0xFE, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF}));
    t.put("i16", TensorData.of(DType.I16, new long[] {2}, shortsLE(-300, 7)));
    t.put("i8", TensorData.of(DType.I8, new long[] {2}, new byte[] {-128, 5}));
    t.put("u8", TensorData.of(DType.U8, new long[] {2}, new byte[] {(byte) 200, 5}));
    t.put("bool", TensorData.of(DType.BOOL, new long[] {3}, new byte[] {1, 0, 1}));
    t.put("scalar", TensorData.ofFloats(new float[] {42f}));
    t.put("empty", TensorData.ofFloats(new float[0], 0, 4));
    Path f = dir.resolve("nd.safetensors");
    SafetensorsWriter.write(f, t, null);

    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      NDArray a = sf.toNDArray("f32", manager);
      assertThat(a.getDataType()).isEqualTo(DataType.FLOAT32);
      assertThat(a.getShape()).isEqualTo(new Shape(2, 3));
      assertThat(a.toFloatArray()).containsExactly(1f, 2f, 3f, 4f, 5f, 6f);
      // The array must own its memory: mutating it must not touch the read-only mapping.
      a.addi(1f);
      assertThat(sf.toFloatArray("f32")).containsExactly(1f, 2f, 3f, 4f, 5f, 6f);

      NDArray bf = sf.toNDArray("bf16", manager);
      assertThat(bf.getDataType()).isEqualTo(DataType.FLOAT32);
      assertThat(bf.toFloatArray()).containsExactly(1f, -2.5f);
      NDArray hf = sf.toNDArray("f16", manager);
      assertThat(hf.getDataType()).isEqualTo(DataType.FLOAT32);
      assertThat(hf.toFloatArray()).containsExactly(65504f, 0x1p-24f);
      NDArray f64 = sf.toNDArray("f64", manager);
      assertThat(f64.getDataType()).isEqualTo(DataType.FLOAT64);
      assertThat(f64.toDoubleArray()).containsExactly(0.1, -1e300);
      NDArray i64 = sf.toNDArray("i64", manager);
      assertThat(i64.getDataType()).isEqualTo(DataType.INT64);
      assertThat(i64.toLongArray()).containsExactly(Long.MAX_VALUE, -1L);
      NDArray i32 = sf.toNDArray("i32", manager);
      assertThat(i32.getDataType()).isEqualTo(DataType.INT32);
      assertThat(i32.toIntArray()).containsExactly(-2);
      NDArray i16 = sf.toNDArray("i16", manager);
      assertThat(i16.getDataType()).isEqualTo(DataType.INT32);
      assertThat(i16.toIntArray()).containsExactly(-300, 7);
      NDArray i8 = sf.toNDArray("i8", manager);
      assertThat(i8.getDataType()).isEqualTo(DataType.INT8);
      assertThat(i8.toByteArray()).containsExactly(-128, 5);
      NDArray u8 = sf.toNDArray("u8", manager);
      assertThat(u8.getDataType()).isEqualTo(DataType.UINT8);
      assertThat(u8.toUint8Array()).containsExactly(200, 5);
      NDArray b = sf.toNDArray("bool", manager);
      assertThat(b.getDataType()).isEqualTo(DataType.BOOLEAN);
      assertThat(b.toBooleanArray()).containsExactly(true, false, true);
      NDArray s = sf.toNDArray("scalar", manager);
      assertThat(s.getShape()).isEqualTo(new Shape());
      assertThat(s.getFloat()).isEqualTo(42f);
      NDArray e = sf.toNDArray("empty", manager);
      assertThat(e.getShape()).isEqualTo(new Shape(0, 4));
      assertThat(e.size()).isZero();
    }
  }

  @Test
  void ndArrayToTensorDataAndBack() throws IOException {
    Map<String, TensorData> t = new LinkedHashMap<>();
    t.put("f32", TensorData.ofNDArray(manager.create(new float[] {1.5f, -2f, 3f, 4f}, new Shape(2, 2))));
    t.put("f64", TensorData.ofNDArray(manager.create(new double[] {0.25})));
    t.put("i64", TensorData.ofNDArray(manager.create(new long[] {9, -9})));
    t.put("i32", TensorData.ofNDArray(manager.create(new int[] {-7})));
    t.put("i8", TensorData.ofNDArray(manager.create(new byte[] {-3, 4})));
    t.put("u8", TensorData.ofNDArray(manager.create(new byte[] {(byte) 250}).toType(DataType.UINT8, false)));
    t.put("bool", TensorData.ofNDArray(manager.create(new boolean[] {false, true})));
    t.put("f16", TensorData.ofNDArray(manager.create(new float[] {1f, -2.5f}).toType(DataType.FLOAT16, false)));
    t.put("scalar", TensorData.ofNDArray(manager.create(3f)));

    assertThat(t.get("f32").dtype()).isEqualTo(DType.F32);
    assertThat(t.get("f32").shape()).containsExactly(2, 2);
    assertThat(t.get("f16").dtype()).isEqualTo(DType.F16);
    assertThat(SafetensorsFileTest.bytesOf(t.get("f16").bytes()))
        .containsExactly(0x00, 0x3C, 0x00, 0xC1);
    assertThat(SafetensorsFileTest.bytesOf(t.get("i32").bytes()))
        .containsExactly(0xF9, 0xFF, 0xFF, 0xFF);
    assertThat(t.get("scalar").shape()).isEmpty();

    Path f = dir.resolve("back.safetensors");
    SafetensorsWriter.write(f, t, null);
    try (SafetensorsFile sf = SafetensorsFile.open(f)) {
      assertThat(sf.toFloatArray("f32")).containsExactly(1.5f, -2f, 3f, 4f);
      assertThat(sf.info("f64").dtype()).isEqualTo(DType.F64);
      assertThat(sf.toFloatArray("f64")).containsExactly(0.25f);
      assertThat(sf.toLongArray("i64")).containsExactly(9L, -9L);
      assertThat(sf.toLongArray("i32")).containsExactly(-7L);
      assertThat(sf.toLongArray("i8")).containsExactly(-3L, 4L);
      assertThat(sf.info("u8").dtype()).isEqualTo(DType.U8);
      assertThat(sf.toLongArray("u8")).containsExactly(250L);
      assertThat(sf.info("bool").dtype()).isEqualTo(DType.BOOL);
      assertThat(sf.toLongArray("bool")).containsExactly(0L, 1L);
      assertThat(sf.toFloatArray("f16")).containsExactly(1f, -2.5f);
      assertThat(sf.toFloatArray("scalar")).containsExactly(3f);
    }
  }

  @Test
  void djlTypeMappingNeverYieldsHalfTypes() {
    for (DType d : DType.values()) {
      assertThat(d.djlType()).isNotIn(DataType.BFLOAT16, DataType.FLOAT16, DataType.INT16);
    }
    assertThat(DType.F16.djlType()).isEqualTo(DataType.FLOAT32);
    assertThat(DType.BF16.djlType()).isEqualTo(DataType.FLOAT32);
    assertThat(DType.I16.djlType()).isEqualTo(DataType.INT32);
    assertThat(DType.fromDjl(DataType.BFLOAT16)).isEqualTo(DType.BF16);
    assertThat(DType.fromDjl(DataType.INT16)).isEqualTo(DType.I16);
    assertThat(DType.fromDjl(DataType.UINT8)).isEqualTo(DType.U8);
    assertThatThrownBy(() -> DType.fromDjl(DataType.STRING)).isInstanceOf(IllegalArgumentException.class);
  }
}
