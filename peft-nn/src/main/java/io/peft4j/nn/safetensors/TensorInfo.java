package io.peft4j.nn.safetensors;

import java.util.Arrays;
import java.util.Objects;

/** Header entry of one tensor: name, dtype, shape and its byte range within the data buffer. */
public final class TensorInfo {
  private final String name;
  private final DType dtype;
  private final long[] shape;
  private final long begin;
  private final long end;
  private final long numel;

  TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {
    this.name = Objects.requireNonNull(name, "name");
    this.dtype = Objects.requireNonNull(dtype, "dtype");
    this.shape = shape.clone();
    this.begin = begin;
    this.end = end;
    this.numel = Shapes.numel(this.shape);
  }

  public String name() {
    return name;
  }

  public DType dtype() {
    return dtype;
  }

  /** A copy of the shape; empty for a scalar. */
  public long[] shape() {
    return shape.clone();
  }

  /** Start offset relative to the data buffer (inclusive). */
  public long begin() {
    return begin;
  }

  /** End offset relative to the data buffer (exclusive). */
  public long end() {
    return end;
  }

  public long numel() {
    return numel;
  }

  public long byteSize() {
    return end - begin;
  }

  @Override
  public boolean equals(Object o) {
    if (!(o instanceof TensorInfo)) {
      return false;
    }
    TensorInfo t = (TensorInfo) o;
    return name.equals(t.name) && dtype == t.dtype && Arrays.equals(shape, t.shape)
        && begin == t.begin && end == t.end;
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
  }

  @Override
  public String toString() {
    return name + " " + dtype.safetensorsName() + " " + Arrays.toString(shape) + " [" + begin + ", " + end + ")";
  }
}
