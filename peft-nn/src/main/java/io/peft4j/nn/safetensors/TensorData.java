package io.peft4j.nn.safetensors;

import ai.djl.ndarray.NDArray;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;

/**
 * An immutable tensor held in Java memory (at most 2 GiB), ready to be written with {@link
 * SafetensorsWriter}: dtype, shape and densely packed little-endian row-major bytes.
 */
public final class TensorData {
  private final DType dtype;
  private final long[] shape;
  private final long numel;
  // Always read-only so handing out duplicates cannot mutate the tensor.
  private final ByteBuffer bytes;

  private TensorData(DType dtype, long[] shape, ByteBuffer readOnlyBytes) {
    this.dtype = dtype;
    this.shape = shape;
    this.numel = numelChecked(shape);
    this.bytes = readOnlyBytes;
    long expected = Math.multiplyExact(numel, (long) dtype.byteSize());
    if (readOnlyBytes.remaining() != expected) {
      throw new IllegalArgumentException("dtype " + dtype.safetensorsName() + " and shape "
          + Arrays.toString(shape) + " need " + expected + " bytes but " + readOnlyBytes.remaining()
          + " were given");
    }
  }

  private static long numelChecked(long[] shape) {
    try {
      return Shapes.numel(shape);
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has too many elements", e);
    }
  }

  private static int bufferSize(DType dtype, long[] shape) {
    long n = Math.multiplyExact(numelChecked(shape), (long) dtype.byteSize());
    if (n > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("tensor of dtype " + dtype.safetensorsName() + " and shape "
          + Arrays.toString(shape) + " is " + n + " bytes; TensorData holds at most 2 GiB");
    }
    return (int) n;
  }

  /** An F32 tensor; {@code data} is copied. */
  public static TensorData ofFloats(float[] data, long... shape) {
    Objects.requireNonNull(data, "data");
    long[] s = shape.clone();
    int size = bufferSize(DType.F32, s);
    if ((long) data.length * 4 != size) {
      throw new IllegalArgumentException("shape " + Arrays.toString(s) + " has " + size / 4
          + " elements but " + data.length + " floats were given");
    }
    ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(data);
    return new TensorData(DType.F32, s, b.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
  }

  /** An I64 tensor; {@code data} is copied. */
  public static TensorData ofLongs(long[] data, long... shape) {
    Objects.requireNonNull(data, "data");
    long[] s = shape.clone();
    int size = bufferSize(DType.I64, s);
    if ((long) data.length * 8 != size) {
      throw new IllegalArgumentException("shape " + Arrays.toString(s) + " has " + size / 8
          + " elements but " + data.length + " longs were given");
    }
    ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    b.asLongBuffer().put(data);
    return new TensorData(DType.I64, s, b.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
  }

  /**
   * A tensor from raw little-endian bytes (copied).
   *
   * @throws IllegalArgumentException if the byte count does not match dtype and shape
   */
  public static TensorData of(DType dtype, long[] shape, byte[] littleEndianBytes) {
    Objects.requireNonNull(dtype, "dtype");
    ByteBuffer b = ByteBuffer.wrap(littleEndianBytes.clone());
    return new TensorData(dtype, shape.clone(), b.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
  }

  /**
   * A tensor over the remaining bytes of {@code littleEndianBytes}. A read-only buffer (such as
   * {@link SafetensorsFile#bytes}) is shared without copying, which lets shards be re-written
   * straight from a memory mapping; a writable buffer is copied.
   */
  public static TensorData of(DType dtype, long[] shape, ByteBuffer littleEndianBytes) {
    Objects.requireNonNull(dtype, "dtype");
    ByteBuffer b;
    if (littleEndianBytes.isReadOnly()) {
      b = littleEndianBytes.slice();
    } else {
      b = ByteBuffer.allocate(littleEndianBytes.remaining());
      b.put(littleEndianBytes.duplicate());
      b.flip();
      b = b.asReadOnlyBuffer();
    }
    return new TensorData(dtype, shape.clone(), b.order(ByteOrder.LITTLE_ENDIAN));
  }

  /**
   * Copies an NDArray out of native memory. FLOAT32, FLOAT64, FLOAT16, INT64, INT32, INT16, INT8,
   * UINT8 and BOOLEAN arrays are supported.
   */
  public static TensorData ofNDArray(NDArray array) {
    DType dtype = DType.fromDjl(array.getDataType());
    if (dtype == DType.BF16) {
      // Reading a BF16 NDArray through the PyTorch engine is not safe; callers should never have one.
      throw new IllegalArgumentException("BFLOAT16 NDArrays are not supported; convert to FLOAT32 first");
    }
    long[] shape = array.getShape().getShape();
    int size = bufferSize(dtype, shape);
    ByteBuffer src = array.toByteBuffer();
    if (src.remaining() != size) {
      throw new IllegalArgumentException("NDArray of type " + array.getDataType() + " and shape "
          + Arrays.toString(shape) + " yielded " + src.remaining() + " bytes, expected " + size);
    }
    ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    if (src.order() == ByteOrder.LITTLE_ENDIAN || dtype.byteSize() == 1) {
      b.put(src.duplicate());
    } else {
      ByteBuffer s = src.duplicate().order(src.order());
      int n = size / dtype.byteSize();
      for (int i = 0; i < n; i++) {
        Elements.putDouble(b, dtype, i, readNative(s, dtype, i));
      }
    }
    b.clear();
    return new TensorData(dtype, shape, b.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
  }

  private static double readNative(ByteBuffer s, DType dtype, int i) {
    return dtype.isFloating() ? Elements.getDouble(s, dtype, i) : Elements.getLong(s, dtype, i);
  }

  public DType dtype() {
    return dtype;
  }

  /** A copy of the shape. */
  public long[] shape() {
    return shape.clone();
  }

  public long numel() {
    return numel;
  }

  public long byteSize() {
    return bytes.remaining();
  }

  /** The data as a read-only little-endian buffer positioned at 0. */
  public ByteBuffer bytes() {
    return bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN);
  }

  /** The elements widened/converted to float (integers and F64 are cast like {@code (float) x}). */
  public float[] toFloatArray() {
    int n = (int) numel;
    float[] out = new float[n];
    ByteBuffer b = bytes();
    if (dtype == DType.F32) {
      b.asFloatBuffer().get(out);
      return out;
    }
    for (int i = 0; i < n; i++) {
      out[i] = Elements.getFloat(b, dtype, i);
    }
    return out;
  }

  /**
   * Converts to another dtype like torch's {@code tensor.to(dtype)}: float narrowing rounds to
   * nearest-even (F16/BF16 overflow to infinity, NaN stays NaN), float to integer truncates toward
   * zero, integer narrowing wraps, anything non-zero becomes {@code true} for BOOL.
   */
  public TensorData toDType(DType target) {
    Objects.requireNonNull(target, "target");
    if (target == dtype) {
      return this;
    }
    int n = (int) numel;
    ByteBuffer out = ByteBuffer.allocate(bufferSize(target, shape)).order(ByteOrder.LITTLE_ENDIAN);
    ByteBuffer in = bytes();
    if (dtype.isFloating()) {
      for (int i = 0; i < n; i++) {
        Elements.putDouble(out, target, i, Elements.getDouble(in, dtype, i));
      }
    } else {
      for (int i = 0; i < n; i++) {
        Elements.putLong(out, target, i, Elements.getLong(in, dtype, i));
      }
    }
    return new TensorData(target, shape, out.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
  }

  @Override
  public String toString() {
    return "TensorData{" + dtype.safetensorsName() + " " + Arrays.toString(shape) + "}";
  }
}
