package io.peft4j.nn;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Process-wide entry point to the PyTorch engine.
 *
 * <p>Every peft4j object that owns native memory gets its manager from here, so the offline switch and the
 * thread settings are applied before DJL loads the engine, without any flag from the user.
 */
public final class Torch {

    /** Default intra-op threads when neither {@code PEFT4J_THREADS} nor {@code ai.djl.pytorch.num_threads} is set. */
    private static volatile boolean initialized;
    private static final Logger LOG = LoggerFactory.getLogger(Torch.class);

    private Torch() {}

    /** Applies offline mode and thread settings, then loads the engine. Idempotent. */
    public static synchronized Engine engine() {
        if (!initialized) {
            // DJL must never reach the network: the native library ships in pytorch-native-cpu.
            System.setProperty("ai.djl.offline", "true");
            System.setProperty("ai.djl.pytorch.graph_optimizer", "false");
            if (System.getProperty("ai.djl.pytorch.num_threads") == null) {
                String env = System.getenv("PEFT4J_THREADS");
                int threads = env != null && !env.isBlank()
                        ? Integer.parseInt(env.trim())
                        : Runtime.getRuntime().availableProcessors();
                System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
            }
            if (System.getProperty("ai.djl.pytorch.num_interop_threads") == null) {
                System.setProperty("ai.djl.pytorch.num_interop_threads", "1");
            }
            if (System.getProperty("org.slf4j.simpleLogger.log.ai.djl") == null) {
                // DJL logs engine start-up chatter (CUDA probing, library extraction) at INFO/WARN.
                System.setProperty("org.slf4j.simpleLogger.log.ai.djl", "error");
            }
            initialized = true;
            hintMklDispatch();
        }
        return Engine.getEngine("PyTorch");
    }

    /** A new root manager on the CPU. The caller owns it and must close it. */
    public static NDManager newManager() {
        return engine().newBaseManager();
    }

    /** Seeds libtorch's generator (used by random init and dropout). */
    public static void manualSeed(long seed) {
        engine().setRandomSeed((int) seed);
    }

    /** Intra-op threads the engine runs with. */
    public static int threads() {
        engine();
        return Integer.parseInt(System.getProperty("ai.djl.pytorch.num_threads"));
    }

    /**
     * Says once that matmuls could run about 2x faster, where that is so: an AMD CPU with AVX-512 and no dispatch
     * library preloaded. {@code PEFT4J_MKL_AVX512} (set by the {@code peft} launcher, or {@code off} by a user)
     * means the choice was made, and silences it.
     */
    private static void hintMklDispatch() {
        if (System.getenv("PEFT4J_MKL_AVX512") != null || mklDispatchPreloaded()) {
            return;
        }
        try {
            if (amdWithAvx512(Files.readAllLines(Path.of("/proc/cpuinfo")))) {
                LOG.info("MKL runs its AVX2 matmul kernels on this AMD CPU with AVX-512; preloading {} makes matmuls "
                        + "about 2x faster (README: \"MKL on AMD CPUs\"; PEFT4J_MKL_AVX512=off silences this)",
                        MKL_DISPATCH_LIBRARY);
            }
        } catch (IOException | RuntimeException e) {
            // Not Linux, or no /proc: nothing to say.
        }
    }

    /** Whether {@code /proc/cpuinfo}'s lines describe an AMD CPU whose flags include {@code avx512f}. */
    static boolean amdWithAvx512(List<String> cpuinfo) {
        boolean amd = cpuinfo.stream().anyMatch(l -> l.startsWith("vendor_id") && l.endsWith("AuthenticAMD"));
        boolean avx512 = cpuinfo.stream().anyMatch(l -> l.startsWith("flags") && (" " + l + " ").contains(" avx512f "));
        return amd && avx512;
    }

    /** File name of the library the {@code peft} launcher preloads on AMD CPUs with AVX-512 (README: "MKL on AMD CPUs"). */
    public static final String MKL_DISPATCH_LIBRARY = "libpeft4j_mkl_dispatch.so";

    /**
     * Whether this process runs with {@link #MKL_DISPATCH_LIBRARY} preloaded, so that libtorch's MKL picks its
     * AVX-512 GEMM kernels on an AMD CPU. False where {@code /proc/self/maps} cannot be read.
     */
    public static boolean mklDispatchPreloaded() {
        try (Stream<String> maps = Files.lines(Path.of("/proc/self/maps"))) {
            return maps.anyMatch(l -> l.endsWith("/" + MKL_DISPATCH_LIBRARY));
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }
}
