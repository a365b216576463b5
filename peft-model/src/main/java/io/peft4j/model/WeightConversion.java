package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.peft4j.config.InitLoraWeights;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.nn.Param;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.tuners.lora.LoraModel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * peft's {@code save_pretrained(..., path_initial_model_for_weight_conversion=...)}: saves an adapter whose
 * initialisation changed the base weights (PiSSA, OLoRA, LoRA-GA, CorDA) as a plain LoRA adapter that applies to
 * the original base model (see {@link LoraModel#subtractMutatedInit}).
 */
final class WeightConversion {
    private WeightConversion() {}

    /** Initialisations that move part of the base weight into the adapter. */
    static boolean mutatesBase(InitLoraWeights init) {
        if (!init.isString()) {
            return false;
        }
        String n = init.name();
        return n.equals("pissa") || n.startsWith("pissa_niter_") || n.equals("olora") || n.equals("corda")
                || n.equals("lora_ga");
    }

    /**
     * The converted config and tensors of one adapter. New arrays are attached to {@code scratch}.
     *
     * @param trained the adapter's tensors under the saved keys
     */
    static AdapterIO.Entry convert(String subdir, PeftConfig config, Map<String, Param> trained, Path initialDir,
                                   NDManager scratch) {
        LoraConfig current = checkConvertible(config);
        Path configFile = initialDir.resolve(PeftConfig.CONFIG_NAME);
        if (!Files.isRegularFile(configFile)) {
            throw new IllegalArgumentException(configFile + ": not found. path_initial_model_for_weight_conversion "
                    + "must be the directory the adapter was saved to right after getPeftModel, before training.");
        }
        checkInitial(PeftConfig.fromPretrained(initialDir), current, configFile);
        Path weights = AdapterIO.weightsFile(initialDir);
        Map<String, NDArray> now = new LinkedHashMap<>();
        trained.forEach((k, p) -> now.put(k, p.data()));
        Map<String, NDArray> converted = LoraModel.subtractMutatedInit(now, readTensors(weights, scratch),
                weights.toString(), scratch);
        Map<String, Param> tensors = new LinkedHashMap<>();
        converted.forEach((k, a) -> tensors.put(k, a == now.get(k) ? trained.get(k) : new Param(a, false)));
        return new AdapterIO.Entry(subdir, convertedConfig(current), tensors);
    }

    private static LoraConfig checkConvertible(PeftConfig config) {
        if (!(config instanceof LoraConfig c)) {
            throw new IllegalArgumentException("path_initial_model_for_weight_conversion converts LoRA adapters only; "
                    + "this adapter is " + config.peftType());
        }
        if (c.useRslora() && (!c.rankPattern().isEmpty() || !c.alphaPattern().isEmpty())) {
            throw new IllegalArgumentException("Passing `path_initial_model_for_weight_conversion` to `save_pretrained` "
                    + "is not supported when using `rank_pattern` or `alpha_pattern` at the same time as "
                    + "`use_rslora=True`.");
        }
        if (c.useDora()) {
            throw new IllegalArgumentException("path_initial_model_for_weight_conversion cannot convert a DoRA adapter: "
                    + "its magnitude vector depends on the base weight");
        }
        if (!c.initLoraWeights().isTrue() && !mutatesBase(c.initLoraWeights())) {
            throw new IllegalArgumentException("path_initial_model_for_weight_conversion only converts a PiSSA, OLoRA, "
                    + "LoRA-GA or CorDA adapter to LoRA; this adapter has init_lora_weights="
                    + c.initLoraWeights());
        }
        return c;
    }

    /** The initial adapter must be the same adapter before training: same kind, rank and scaling. */
    private static void checkInitial(PeftConfig read, LoraConfig current, Path file) {
        if (!(read instanceof LoraConfig initial)) {
            throw new IllegalArgumentException(file + ": peft_type " + read.peftType() + "; expected the initial LORA "
                    + "adapter saved before training");
        }
        InitLoraWeights init = initial.initLoraWeights();
        if (!init.isTrue() && !mutatesBase(init)) {
            throw new IllegalArgumentException(file + ": init_lora_weights=" + init + "; the initial adapter must "
                    + "come from a PiSSA, OLoRA, LoRA-GA or CorDA initialisation (init_lora_weights \"pissa\", "
                    + "\"pissa_niter_N\", \"olora\", \"lora_ga\", \"corda\", or true as peft rewrites it)");
        }
        InitLoraWeights now = current.initLoraWeights();
        if (init.isString() && now.isString() && !init.name().equals(now.name())) {
            throw new IllegalArgumentException(file + ": init_lora_weights=" + init + " but the trained adapter was "
                    + "initialised with " + now);
        }
        mustEqual(file, "r", initial.r(), current.r());
        mustEqual(file, "lora_alpha", initial.loraAlphaValue(), current.loraAlphaValue());
        mustEqual(file, "use_rslora", initial.useRslora(), current.useRslora());
        mustEqual(file, "rank_pattern", initial.rankPattern(), current.rankPattern());
        mustEqual(file, "alpha_pattern", doubles(initial.alphaPattern()), doubles(current.alphaPattern()));
    }

    private static void mustEqual(Path file, String field, Object initial, Object current) {
        if (!Objects.equals(initial, current)) {
            throw new IllegalArgumentException(file + ": " + field + "=" + initial + " but the trained adapter has "
                    + field + "=" + current + "; the initial adapter must be saved from the same config");
        }
    }

    private static Map<String, Double> doubles(Map<String, Number> m) {
        Map<String, Double> out = new LinkedHashMap<>();
        m.forEach((k, v) -> out.put(k, v.doubleValue()));
        return out;
    }

    /** Every tensor of the file as FLOAT32 under the keys {@link PeftModel} saves (prefix added if missing). */
    private static Map<String, NDArray> readTensors(Path file, NDManager into) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            for (String name : st.names()) {
                NDArray a = st.toNDArray(name, into);
                String key = name.startsWith("base_model.model.") ? name : "base_model.model." + name;
                out.put(key, a.getDataType() == DataType.FLOAT32 ? a : a.toType(DataType.FLOAT32, false));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": " + e.getMessage(), e);
        }
        return out;
    }

    /**
     * peft's config for the converted adapter: {@code init_lora_weights} true, {@code r} doubled and
     * {@code lora_alpha} doubled (times √2 with rsLoRA) so the scaling is unchanged; non-empty rank and alpha
     * patterns doubled.
     */
    static LoraConfig convertedConfig(LoraConfig c) {
        LoraConfig.Builder b = c.toBuilder().initLoraWeights(true).r(2 * c.r())
                .loraAlpha(c.useRslora() ? c.loraAlphaValue() * Math.sqrt(2) : doubled(c.loraAlpha()));
        if (!c.rankPattern().isEmpty()) {
            Map<String, Integer> ranks = new LinkedHashMap<>();
            c.rankPattern().forEach((k, v) -> ranks.put(k, 2 * v));
            b.rankPattern(ranks);
        }
        if (!c.alphaPattern().isEmpty()) {
            Map<String, Number> alphas = new LinkedHashMap<>();
            c.alphaPattern().forEach((k, v) -> alphas.put(k, doubled(v)));
            b.alphaPattern(alphas);
        }
        return b.build();
    }

    /** {@code 2 * v} as Python computes it: an int stays an int. */
    private static Number doubled(Number v) {
        if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof java.math.BigInteger) {
            return 2 * v.longValue();
        }
        return 2 * v.doubleValue();
    }
}
