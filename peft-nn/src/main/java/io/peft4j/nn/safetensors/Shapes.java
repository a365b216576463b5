package io.peft4j.nn.safetensors;

final class Shapes {
  private Shapes() {}

  /** Element count; throws ArithmeticException on overflow and IllegalArgumentException on negative dims. */
  static long numel(long[] shape) {
    long n = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + java.util.Arrays.toString(shape));
      }
      n = Math.multiplyExact(n, d);
    }
    return n;
  }
}
