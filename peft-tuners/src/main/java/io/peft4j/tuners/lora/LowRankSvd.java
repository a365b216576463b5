package io.peft4j.tuners.lora;

import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.CommonOps_DDRM;
import org.ejml.dense.row.SingularOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.QRDecomposition;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;

import java.util.Arrays;

/**
 * Truncated SVD of a matrix given as a product {@code M = P·Q} with {@code P (out, R)} and {@code Q (R, in)}, as
 * the {@code svd} adapter combination needs ({@code M = Σ c_i B_i A_i} has rank at most {@code R = Σ r_i}).
 *
 * <p>peft runs {@code torch.linalg.svd} on the dense {@code (out, in)} matrix. Here {@code P = Q_p R_p} and
 * {@code Qᵀ = Q_q R_q} (thin QR), so {@code M = Q_p (R_p R_qᵀ) Q_qᵀ} and only the small {@code R × R} core is
 * decomposed: {@code O((out + in)·R²)} instead of {@code O(out·in·min(out, in))}, with the same singular values and
 * the same subspaces (singular vectors may differ in sign, so the product {@code B·A} is what is comparable).
 */
final class LowRankSvd {
    private LowRankSvd() {}

    /**
     * @return {@code {A (k, in), B (out, k)}} with {@code B = U_k·diag(S_k)} and {@code A = V_kᵀ}, singular values in
     *         descending order; components past the rank of {@code M} are zero
     */
    static float[][] truncated(float[] p, float[] q, int out, int in, int rank, int k) {
        DMatrixRMaj pm = LoraInit.matrix(p, out, rank);
        DMatrixRMaj qt = new DMatrixRMaj(in, rank);
        CommonOps_DDRM.transpose(LoraInit.matrix(q, rank, in), qt);
        DMatrixRMaj[] qrP = thinQr(pm);
        DMatrixRMaj[] qrQ = thinQr(qt);
        DMatrixRMaj core = new DMatrixRMaj(qrP[1].numRows, qrQ[1].numRows);
        CommonOps_DDRM.multTransB(qrP[1], qrQ[1], core);
        SingularValueDecomposition_F64<DMatrixRMaj> svd =
                DecompositionFactory_DDRM.svd(core.numRows, core.numCols, true, true, true);
        if (!svd.decompose(core.copy())) {
            throw new IllegalStateException("SVD of the combined adapter did not converge");
        }
        DMatrixRMaj u = svd.getU(null, false);
        DMatrixRMaj s = svd.getW(null);
        DMatrixRMaj v = svd.getV(null, false);
        SingularOps_DDRM.descendingOrder(u, false, s, v, false);
        DMatrixRMaj fullU = new DMatrixRMaj(out, u.numCols);
        CommonOps_DDRM.mult(qrP[0], u, fullU);
        DMatrixRMaj fullV = new DMatrixRMaj(in, v.numCols);
        CommonOps_DDRM.mult(qrQ[0], v, fullV);
        int t = Math.min(k, Math.min(s.numRows, s.numCols));
        float[] a = new float[k * in];
        float[] b = new float[out * k];
        for (int j = 0; j < t; j++) {
            double sj = s.get(j, j);
            for (int i = 0; i < in; i++) {
                a[j * in + i] = (float) fullV.get(i, j);
            }
            for (int o = 0; o < out; o++) {
                b[o * k + j] = (float) (fullU.get(o, j) * sj);
            }
        }
        return new float[][] {a, b};
    }

    /** {@code {Q (rows, m), R (m, cols)}}, {@code m = min(rows, cols)}. */
    private static DMatrixRMaj[] thinQr(DMatrixRMaj x) {
        QRDecomposition<DMatrixRMaj> qr = DecompositionFactory_DDRM.qr(x.numRows, x.numCols);
        if (!qr.decompose(x.copy())) {
            throw new IllegalStateException("QR of the combined adapter factors failed");
        }
        return new DMatrixRMaj[] {qr.getQ(null, true), qr.getR(null, true)};
    }

    /**
     * Clamps {@code a} and {@code b} in place to {@code [-hi, hi]}, {@code hi} = the {@code quantile}-th quantile of
     * all their values with linear interpolation ({@code torch.quantile}'s default).
     */
    static void clamp(float[] a, float[] b, double quantile) {
        if (!(quantile >= 0 && quantile <= 1)) {
            throw new IllegalArgumentException("svd_clamp must be a quantile in [0, 1], got " + quantile);
        }
        float[] all = new float[a.length + b.length];
        System.arraycopy(b, 0, all, 0, b.length);
        System.arraycopy(a, 0, all, b.length, a.length);
        Arrays.sort(all);
        double pos = quantile * (all.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(lo + 1, all.length - 1);
        float limit = (float) (all[lo] + (pos - lo) * (all[hi] - all[lo]));
        for (float[] x : new float[][] {a, b}) {
            for (int i = 0; i < x.length; i++) {
                x[i] = Math.min(limit, Math.max(-limit, x[i])); // torch.clamp(min, max) order
            }
        }
    }
}
