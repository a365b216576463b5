package io.peft4j.nn.safetensors;

import ai.djl.ndarray.types.DataType;

/**
 * Element types supported by this safetensors implementation.
 *
 * <p>The {@link #djlType()} mapping deliberately widens {@link #F16} and {@link #BF16} to FLOAT32
 * and {@link #I16} to INT32: creating BF16 or INT16 NDArrays aborts the JVM with the PyTorch
 * engine, and half-precision CPU kernels are incomplete, so these types only ever exist on disk
 * and in {@link TensorData}.
 */
public enum DType {
  F64("F64", 8, 19, DataType.FLOAT64),
  F32("F32", 4, 17, DataType.FLOAT32),
  F16("F16", 2, 13, DataType.FLOAT32),
  BF16("BF16", 2, 14, DataType.FLOAT32),
  I64("I64", 8, 20, DataType.INT64),
  I32("I32", 4, 15, DataType.INT32),
  // DJL 0.35.1 has INT16, but creating an INT16 tensor through the PyTorch engine aborts the JVM.
  I16("I16", 2, 11, DataType.INT32),
  I8("I8", 1, 5, DataType.INT8),
  U8("U8", 1, 4, DataType.UINT8),
  BOOL("BOOL", 1, 0, DataType.BOOLEAN);

  private final String name;
  private final int byteSize;
  // Position in the Rust `safetensors::Dtype` enum; the writer orders tensors by it (descending).
  private final int rustOrder;
  private final DataType djlType;

  DType(String name, int byteSize, int rustOrder, DataType djlType) {
    this.name = name;
    this.byteSize = byteSize;
    this.rustOrder = rustOrder;
    this.djlType = djlType;
  }

  /** Bytes per element. */
  public int byteSize() {
    return byteSize;
  }

  /** The dtype string used in safetensors headers, e.g. {@code "BF16"}. */
  public String safetensorsName() {
    return name;
  }

  int rustOrder() {
    return rustOrder;
  }

  /** True for F64, F32, F16 and BF16. */
  public boolean isFloating() {
    return this == F64 || this == F32 || this == F16 || this == BF16;
  }

  /**
   * Parses a header dtype string.
   *
   * @throws SafetensorsException for dtypes that are unknown or not supported (e.g. F8_E4M3, U16)
   */
  public static DType fromSafetensorsName(String name) throws SafetensorsException {
    for (DType d : values()) {
      if (d.name.equals(name)) {
        return d;
      }
    }
    throw new SafetensorsException("unknown or unsupported safetensors dtype '" + name + "'");
  }

  /** The DJL type an NDArray of this dtype is created with (F16/BF16 widen to FLOAT32, I16 to INT32). */
  public DataType djlType() {
    return djlType;
  }

  /**
   * Maps a DJL data type to the dtype it is stored as.
   *
   * @throws IllegalArgumentException for DJL types with no safetensors equivalent here
   */
  public static DType fromDjl(DataType type) {
    switch (type) {
      case FLOAT64:
        return F64;
      case FLOAT32:
        return F32;
      case FLOAT16:
        return F16;
      case BFLOAT16:
        return BF16;
      case INT64:
        return I64;
      case INT32:
        return I32;
      case INT16:
        return I16;
      case INT8:
        return I8;
      case UINT8:
        return U8;
      case BOOLEAN:
        return BOOL;
      default:
        throw new IllegalArgumentException("DJL data type " + type + " has no supported safetensors dtype");
    }
  }
}
