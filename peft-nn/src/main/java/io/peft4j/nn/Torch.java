package io.peft4j.nn;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/**
 * Process-wide entry point to the PyTorch engine.
 *
 * <p>Every peft4j object that owns native memory gets its manager from here, so the offline switch and the
 * thread settings are applied before DJL loads the engine, without any flag from the user.
 */
public final class Torch {

    /** Default intra-op threads when neither {@code PEFT4J_THREADS} nor {@code ai.djl.pytorch.num_threads} is set. */
    private static volatile boolean initialized;

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
