package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.LoraGAConfig;
import java.util.Arrays;
import java.util.Random;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.CommonOps_DDRM;
import org.ejml.dense.row.SingularOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.QRDecomposition;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;

/**
 * Data-driven LoRA initialisations that factor the base weight {@code W (out, in)} and move the chosen part into
 * the adapter, leaving the residual in the base layer so the model's output is unchanged at init:
 * <ul>
 *   <li>PiSSA: {@code W = V S Uh}; {@code A = sqrt(S_r / s) Uh_r}, {@code B = V_r sqrt(S_r / s)}, base
 *       {@code W - s·B A};</li>
 *   <li>OLoRA: {@code W = Q R}; {@code A = R_r}, {@code B = Q_r}, base {@code W - s·B A};</li>
 *   <li>LoRA-GA: from the SVD of the weight's estimated gradient (see {@link LoraGA}), base {@code W - s·B A}.</li>
 * </ul>
 * The factorisations run in double precision in Java (EJML) once, at adapter creation. {@code pissa_niter_N}
 * (peft's randomised SVD) is computed with the exact SVD, which it approximates.
 */
final class LoraInit {
    private LoraInit() {}

    /** {@code {A (r, in), B (out, r), residual (out, in)}} for PiSSA. */
    static float[][] pissa(float[] w, int out, int in, int r, double scaling) {
        Svd svd = svd(w, out, in, true, "PiSSA: SVD of the base weight");
        int k = Math.min(r, svd.s().length);
        float[] a = new float[r * in];
        float[] b = new float[out * r];
        for (int j = 0; j < k; j++) {
            double root = Math.sqrt(svd.s()[j] / scaling);
            for (int i = 0; i < in; i++) {
                a[j * in + i] = (float) (root * svd.vt().get(j, i));
            }
            for (int o = 0; o < out; o++) {
                b[o * r + j] = (float) (svd.u().get(o, j) * root);
            }
        }
        return new float[][] {a, b, residual(w, a, b, out, in, r, scaling)};
    }

    /** A thin SVD {@code m = U diag(s) Vt} with the singular values in descending order. */
    record Svd(DMatrixRMaj u, double[] s, DMatrixRMaj vt) {}

    /**
     * SVD of a row-major {@code (rows, cols)} matrix in double precision; without {@code vectors} only the
     * singular values are computed.
     */
    static Svd svd(float[] w, int rows, int cols, boolean vectors, String what) {
        SingularValueDecomposition_F64<DMatrixRMaj> svd =
                DecompositionFactory_DDRM.svd(rows, cols, vectors, vectors, true);
        if (!svd.decompose(matrix(w, rows, cols))) {
            throw new IllegalStateException(what + " did not converge");
        }
        if (!vectors) {
            double[] s = svd.getSingularValues().clone();
            Arrays.sort(s);
            for (int i = 0; i < s.length / 2; i++) {
                double t = s[i];
                s[i] = s[s.length - 1 - i];
                s[s.length - 1 - i] = t;
            }
            return new Svd(null, s, null);
        }
        DMatrixRMaj u = svd.getU(null, false);
        DMatrixRMaj sw = svd.getW(null);
        DMatrixRMaj vt = svd.getV(null, true);
        SingularOps_DDRM.descendingOrder(u, false, sw, vt, true);
        double[] s = new double[Math.min(rows, cols)];
        for (int j = 0; j < s.length; j++) {
            s[j] = sw.get(j, j);
        }
        return new Svd(u, s, vt);
    }

    /**
     * {@code {A (r, in), B (out, r), residual (out, in)}} for LoRA-GA from the gradient's leading singular vectors
     * ({@code u (out, k)}, {@code vt (k, in)} row-major, {@code k <= 2r}); components past {@code k} are zero.
     *
     * @param w the base weight {@code (out, in)}, for the residual and the {@code weight_svd} scale
     */
    static float[][] loraGa(float[] w, int out, int in, int r, double scaling, float[] u, float[] vt, int k,
                            LoraGAConfig cfg, Random random) {
        int[] aRows = new int[r];
        int[] bCols = new int[r];
        int[] perm = new int[2 * r];
        for (int i = 0; i < perm.length; i++) {
            perm[i] = i;
        }
        if (cfg.direction().equals("random")) {
            for (int i = perm.length - 1; i > 0; i--) {
                int j = random.nextInt(i + 1);
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
        }
        for (int j = 0; j < r; j++) {
            switch (cfg.direction()) {
                case "ArBr" -> {
                    aRows[j] = 2 * j + 1;
                    bCols[j] = 2 * j;
                }
                case "A2rBr" -> {
                    aRows[j] = r + j;
                    bCols[j] = j;
                }
                case "ArB2r" -> {
                    aRows[j] = j;
                    bCols[j] = r + j;
                }
                default -> {
                    aRows[j] = perm[j];
                    bCols[j] = perm[r + j];
                }
            }
        }
        double c = switch (cfg.scale()) {
            // the paper's choice: makes the output's scale independent of the width
            case "stable" -> Math.pow(out, 0.25) / Math.sqrt(cfg.stableGamma());
            // with SGD the first step is then -lr times the gradient's rank-2r part, as full fine-tuning's
            case "gd_scale" -> 1.0 / scaling;
            case "weight_svd" -> {
                double[] s = svd(w, out, in, false, "LoRA-GA: SVD of the base weight").s();
                double sum = 0;
                int n = Math.min(r, s.length);
                for (int j = 0; j < n; j++) {
                    sum += Math.sqrt(s[j] / scaling);
                }
                yield sum / n;
            }
            default -> 1.0;
        };
        float[] a = new float[r * in];
        float[] b = new float[out * r];
        for (int j = 0; j < r; j++) {
            if (aRows[j] < k) {
                for (int i = 0; i < in; i++) {
                    a[j * in + i] = (float) (c * vt[aRows[j] * in + i]);
                }
            }
            if (bCols[j] < k) {
                for (int o = 0; o < out; o++) {
                    b[o * r + j] = (float) (c * u[o * k + bCols[j]]);
                }
            }
        }
        return new float[][] {a, b, residual(w, a, b, out, in, r, scaling)};
    }

    /** {@code {A (r, in), B (out, r), residual (out, in)}} for OLoRA. */
    static float[][] olora(float[] w, int out, int in, int r, double scaling) {
        QRDecomposition<DMatrixRMaj> qr = DecompositionFactory_DDRM.qr(out, in);
        if (!qr.decompose(matrix(w, out, in))) {
            throw new IllegalStateException("OLoRA: QR of the base weight failed");
        }
        DMatrixRMaj q = qr.getQ(null, true);
        DMatrixRMaj rr = qr.getR(null, true);
        int k = Math.min(r, Math.min(out, in));
        float[] a = new float[r * in];
        float[] b = new float[out * r];
        for (int j = 0; j < k; j++) {
            for (int i = 0; i < in; i++) {
                a[j * in + i] = (float) rr.get(j, i);
            }
            for (int o = 0; o < out; o++) {
                b[o * r + j] = (float) q.get(o, j);
            }
        }
        return new float[][] {a, b, residual(w, a, b, out, in, r, scaling)};
    }

    /** A row-major float matrix widened to double for EJML. */
    static DMatrixRMaj matrix(float[] w, int rows, int cols) {
        DMatrixRMaj m = new DMatrixRMaj(rows, cols);
        for (int i = 0; i < w.length; i++) {
            m.data[i] = w[i];
        }
        return m;
    }

    /** {@code W - s·B A} computed from the float factors the adapter will hold. */
    private static float[] residual(float[] w, float[] a, float[] b, int out, int in, int r, double scaling) {
        DMatrixRMaj ba = new DMatrixRMaj(out, in);
        DMatrixRMaj am = new DMatrixRMaj(r, in);
        DMatrixRMaj bm = new DMatrixRMaj(out, r);
        for (int i = 0; i < a.length; i++) {
            am.data[i] = a[i];
        }
        for (int i = 0; i < b.length; i++) {
            bm.data[i] = b[i];
        }
        CommonOps_DDRM.mult(bm, am, ba);
        float[] res = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            res[i] = (float) (w[i] - scaling * ba.data[i]);
        }
        return res;
    }

    static NDArray array(NDManager m, float[] data, long... shape) {
        return m.create(data, new Shape(shape));
    }
}
