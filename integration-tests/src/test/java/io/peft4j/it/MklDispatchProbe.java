package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.cli.Main;
import io.peft4j.nn.Torch;

import java.util.Locale;
import java.util.Random;

/**
 * Run in a child JVM by {@link MklDispatchTest}, so that the MKL dispatch library can be preloaded: prints
 * {@code preloaded=...}, the GEMM error of one MLP-sized matmul against a float64 product computed in Java, and
 * the exit code of {@code peft logits} on the arguments given.
 */
public final class MklDispatchProbe {
    private MklDispatchProbe() {}

    public static void main(String[] args) {
        System.out.println("preloaded=" + Torch.mklDispatchPreloaded());
        System.out.printf(Locale.ROOT, "gemm_error=%.3g%n", gemmError(512, 512, 1376));
        System.out.println("logits_exit=" + Main.execute(args));
    }

    /**
     * max |C - A·B| / (|A|·|B|) over every entry, for uniform random A [m, k], B [k, n] in [-1, 1): float32 with
     * any summation order stays below about 1e-6.
     */
    static double gemmError(int m, int k, int n) {
        Random rnd = new Random(7);
        float[] a = new float[m * k];
        float[] b = new float[k * n];
        for (int i = 0; i < a.length; i++) {
            a[i] = rnd.nextFloat() * 2 - 1;
        }
        for (int i = 0; i < b.length; i++) {
            b[i] = rnd.nextFloat() * 2 - 1;
        }
        float[] c;
        try (NDManager nd = Torch.newManager()) {
            NDArray prod = nd.create(a, new Shape(m, k)).matMul(nd.create(b, new Shape(k, n)));
            c = prod.toFloatArray();
        }
        double worst = 0;
        double[] row = new double[n];
        double[] absRow = new double[n];
        for (int i = 0; i < m; i++) {
            java.util.Arrays.fill(row, 0);
            java.util.Arrays.fill(absRow, 0);
            for (int p = 0; p < k; p++) {
                double av = a[i * k + p];
                for (int j = 0; j < n; j++) {
                    double bv = b[p * n + j];
                    row[j] += av * bv;
                    absRow[j] += Math.abs(av * bv);
                }
            }
            for (int j = 0; j < n; j++) {
                worst = Math.max(worst, Math.abs(c[i * n + j] - row[j]) / absRow[j]);
            }
        }
        return worst;
    }
}
