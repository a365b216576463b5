package io.peft4j.nn.quant;

import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Set;

/** Converting a module tree between float32 Linear layers and {@link Linear4bit}. */
public final class Quantization {
    private static final Logger LOG = LoggerFactory.getLogger(Quantization.class);

    private Quantization() {}

    /**
     * Replaces every {@link Linear} and GPT-2 {@link Conv1D} (transposed, as transformers does) that {@code config}
     * does not skip by a {@link Linear4bit}, closing its float
     * weight as soon as it is quantised (no full-precision copy is kept). A Linear whose weight is shared with
     * another module (tied embeddings) stays in float32. Returns the number of layers converted.
     */
    public static int quantize(Module model, BitsAndBytesConfig config) {
        return quantize(model, config, config::skips);
    }

    /** As {@link #quantize(Module, BitsAndBytesConfig)}, with the modules kept in float32 chosen by {@code keepFloat}. */
    public static int quantize(Module model, BitsAndBytesConfig config, java.util.function.Predicate<String> keepFloat) {
        Set<Param> otherOwners = Collections.newSetFromMap(new IdentityHashMap<>());
        for (Module m : model.namedModules().values()) {
            if (!(m instanceof Linear) && !(m instanceof Conv1D)) {
                otherOwners.addAll(m.parameters().values());
            }
        }
        int n = 0;
        for (Map.Entry<String, Module> e : model.namedModules().entrySet()) {
            Module m = e.getValue();
            if (!(m instanceof Linear || m instanceof Conv1D) || e.getKey().isEmpty() || keepFloat.test(e.getKey())
                    || isAdapterPath(e.getKey())) {
                continue;
            }
            Param weight = m.param("weight");
            if (otherOwners.contains(weight)) {
                LOG.warn("{} shares its weight with another module (tied embeddings); kept in full precision", e.getKey());
                continue;
            }
            Linear4bit q;
            try (NoGrad ignored = NoGrad.enter()) {
                q = m instanceof Linear lin
                        ? Linear4bit.quantize(lin, config.quantType(), config.blocksize(), config.doubleQuant())
                        : Linear4bit.quantize((Conv1D) m, config.quantType(), config.blocksize(), config.doubleQuant());
            }
            q.train(m.isTraining());
            model.setSubmodule(e.getKey(), q);
            weight.data().close();
            n++;
        }
        return n;
    }

    /** Adapter weights (peft's {@code lora_A}/{@code lora_B}/... containers) are trained and never quantised. */
    private static boolean isAdapterPath(String path) {
        for (String part : path.split("\\.")) {
            if (part.startsWith("lora_")) {
                return true;
            }
        }
        return false;
    }

    /**
     * Replaces every {@link Linear4bit} by the float32 module it stands for ({@link Linear}, or GPT-2's Conv1D) with the
     * dequantised weight; returns the count.
     */
    public static int dequantize(Module model) {
        int n = 0;
        for (Map.Entry<String, Module> e : model.namedModules().entrySet()) {
            if (e.getValue() instanceof Linear4bit q && !e.getKey().isEmpty()) {
                model.setSubmodule(e.getKey(), q.toFloat());
                q.weight().data().close();
                n++;
            }
        }
        return n;
    }

    /** True when the tree holds a 4-bit layer. */
    public static boolean isQuantized(Module model) {
        return model.namedModules().values().stream().anyMatch(m -> m instanceof Linear4bit);
    }

    /** {@code {bytes, parameters}} of the 4-bit layers' weights (codes and quant state; biases excluded). */
    public static long[] quantizedWeightFootprint(Module model) {
        long bytes = 0;
        long params = 0;
        for (Module m : model.namedModules().values()) {
            if (m instanceof Linear4bit q) {
                bytes += q.weightBytes();
                params += q.inFeatures() * q.outFeatures();
            }
        }
        return new long[] {bytes, params};
    }
}
