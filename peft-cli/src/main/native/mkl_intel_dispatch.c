/*
 * libtorch links Intel oneMKL statically and exports MKL's internal symbols. MKL chooses its GEMM kernels by CPU
 * vendor first and by instruction set second: on an AMD CPU with AVX-512 (Zen 4, Zen 5) it runs its AVX2 kernels,
 * about half the float32 matmul throughput the hardware has. MKL asks this function whether the CPU is Intel's;
 * preloading a library that answers yes lets MKL's own feature checks pick the AVX-512 kernels, which compute the
 * same float32 GEMM.
 *
 * The `peft` launcher compiles this file and sets LD_PRELOAD only on AMD CPUs that report avx512f
 * (PEFT4J_MKL_AVX512=off disables it). See README.md, "MKL on AMD CPUs".
 */
int mkl_serv_intel_cpu_true(void) {
    return 1;
}
