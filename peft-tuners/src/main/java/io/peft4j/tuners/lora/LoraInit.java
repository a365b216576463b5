package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
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
 *   <li>OLoRA: {@code W = Q R}; {@code A = R_r}, {@code B = Q_r}, base {@code W - s·B A}.</li>
 * </ul>
 * The factorisations run in double precision in Java (EJML) once, at adapter creation. {@code pissa_niter_N}
 * (peft's randomised SVD) is computed with the exact SVD, which it approximates.
 */
final class LoraInit {
    private LoraInit() {}

    /** {@code {A (r, in), B (out, r), residual (out, in)}} for PiSSA. */
    static float[][] pissa(float[] w, int out, int in, int r, double scaling) {
        DMatrixRMaj m = matrix(w, out, in);
        SingularValueDecomposition_F64<DMatrixRMaj> svd = DecompositionFactory_DDRM.svd(out, in, true, true, true);
        if (!svd.decompose(m.copy())) {
            throw new IllegalStateException("PiSSA: SVD of the base weight did not converge");
        }
        DMatrixRMaj u = svd.getU(null, false);
        DMatrixRMaj s = svd.getW(null);
        DMatrixRMaj vt = svd.getV(null, true);
        SingularOps_DDRM.descendingOrder(u, false, s, vt, true);
        int k = Math.min(r, Math.min(out, in));
        float[] a = new float[r * in];
        float[] b = new float[out * r];
        for (int j = 0; j < k; j++) {
            double root = Math.sqrt(s.get(j, j) / scaling);
            for (int i = 0; i < in; i++) {
                a[j * in + i] = (float) (root * vt.get(j, i));
            }
            for (int o = 0; o < out; o++) {
                b[o * r + j] = (float) (u.get(o, j) * root);
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

    private static DMatrixRMaj matrix(float[] w, int rows, int cols) {
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
