package io.peft4j.nn.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

class TensorDataTest {
  private static int[] shorts(TensorData t) {
    ByteBuffer b = t.bytes();
    int[] out = new int[b.remaining() / 2];
    for (int i = 0; i < out.length; i++) {
      out[i] = b.getShort(i * 2) & 0xFFFF;
    }
    return out;
  }

  @Test
  void f32ToBf16AndF16UseHandComputedBits() {
    TensorData t = TensorData.ofFloats(new float[] {1f, -2.5f, 65504f, Float.POSITIVE_INFINITY,
        Float.NaN, Float.intBitsToFloat(0x3F808000), Float.intBitsToFloat(0x3F818000)}, 7);
    TensorData bf = t.toDType(DType.BF16);
    assertThat(bf.dtype()).isEqualTo(DType.BF16);
    assertThat(bf.shape()).containsExactly(7);
    assertThat(bf.byteSize()).isEqualTo(14);
    assertThat(shorts(bf)).containsExactly(0x3F80, 0xC020, 0x4780, 0x7F80, 0x7FC0, 0x3F80, 0x3F82);

    TensorData hf = TensorData.ofFloats(new float[] {1f, -2.5f, 65504f, 0x1p-24f,
        Float.NEGATIVE_INFINITY, Float.NaN, 65520f, Float.intBitsToFloat(0x3F801000)}, 2, 4).toDType(DType.F16);
    assertThat(hf.shape()).containsExactly(2, 4);
    assertThat(shorts(hf)).containsExactly(0x3C00, 0xC100, 0x7BFF, 0x0001, 0xFC00, 0x7E00, 0x7C00, 0x3C00);
  }

  @Test
  void wideningBackIsExact() {
    TensorData bf = TensorData.of(DType.BF16, new long[] {3}, new byte[] {(byte) 0x80, 0x3F, 0x20, (byte) 0xC0, 0x01, 0x00});
    assertThat(bf.toDType(DType.F32).toFloatArray())
        .containsExactly(1f, -2.5f, Float.intBitsToFloat(0x00010000));
    TensorData hf = TensorData.of(DType.F16, new long[] {2}, new byte[] {0x01, 0x00, (byte) 0xFF, 0x7B});
    TensorData f64 = hf.toDType(DType.F64);
    assertThat(f64.bytes().getDouble(0)).isEqualTo(0x1p-24);
    assertThat(f64.bytes().getDouble(8)).isEqualTo(65504.0);
    assertThat(hf.toDType(DType.F32).toDType(DType.F16).bytes()).isEqualTo(hf.bytes());
  }

  @Test
  void integerConversions() {
    TensorData f = TensorData.ofFloats(new float[] {-1.7f, 2.9f, 0f, 300f}, 4);
    TensorData i8 = f.toDType(DType.I8);
    assertThat(SafetensorsFileTest.bytesOf(i8.bytes())).containsExactly(-1, 2, 0, 44); // 300 wraps to 44
    TensorData b = f.toDType(DType.BOOL);
    assertThat(SafetensorsFileTest.bytesOf(b.bytes())).containsExactly(1, 1, 0, 1);
    TensorData l = TensorData.ofLongs(new long[] {-1, 65537}, 2);
    TensorData i16 = l.toDType(DType.I16);
    assertThat(shorts(i16)).containsExactly(0xFFFF, 0x0001);
    assertThat(l.toDType(DType.F32).toFloatArray()).containsExactly(-1f, 65537f);
    assertThat(l.toDType(DType.I64)).isSameAs(l);
  }

  @Test
  void validatesByteCountsAndShapes() {
    assertThatThrownBy(() -> TensorData.of(DType.F32, new long[] {2, 3}, new byte[20]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("F32")
        .hasMessageContaining("[2, 3]")
        .hasMessageContaining("24 bytes");
    assertThatThrownBy(() -> TensorData.ofFloats(new float[5], 2, 3))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("6 elements");
    assertThatThrownBy(() -> TensorData.ofFloats(new float[0], -1))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("negative");
    assertThatThrownBy(() -> TensorData.ofFloats(new float[0], 1L << 40, 1L << 40))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void isImmutable() {
    float[] src = {1f, 2f};
    long[] shape = {2};
    TensorData t = TensorData.ofFloats(src, shape);
    src[0] = 99f;
    shape[0] = 5;
    t.shape()[0] = 7;
    assertThat(t.toFloatArray()).containsExactly(1f, 2f);
    assertThat(t.shape()).containsExactly(2);
    assertThat(t.bytes().isReadOnly()).isTrue();
    assertThat(t.bytes().order()).isEqualTo(ByteOrder.LITTLE_ENDIAN);

    byte[] raw = {1, 2};
    TensorData u = TensorData.of(DType.U8, new long[] {2}, raw);
    raw[0] = 9;
    assertThat(SafetensorsFileTest.bytesOf(u.bytes())).containsExactly(1, 2);

    ByteBuffer writable = ByteBuffer.wrap(new byte[] {3, 4});
    TensorData w = TensorData.of(DType.U8, new long[] {2}, writable);
    writable.put(0, (byte) 9);
    assertThat(SafetensorsFileTest.bytesOf(w.bytes())).containsExactly(3, 4);
  }
}
