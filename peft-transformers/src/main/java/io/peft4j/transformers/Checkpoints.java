package io.peft4j.transformers;

import java.util.function.Function;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.model.ModelConfig;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Module;
import io.peft4j.nn.Init;
import io.peft4j.nn.Param;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.nn.safetensors.TensorInfo;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.quant.BnbFormat;
import io.peft4j.nn.quant.Linear4bit;
import io.peft4j.nn.quant.Quantization;
import io.peft4j.nn.quant.Quantizer;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;
import java.util.function.UnaryOperator;

/** Loading transformers checkpoints into a module tree by name, and exporting its state for saving. */
public final class Checkpoints {
    private Checkpoints() {}

    /**
     * Copies every tensor of a safetensors checkpoint (a file, a directory with {@code model.safetensors},
     * or a sharded index) into the parameter or persistent buffer of the same dotted name.
     *
     * <p>All names and shapes are checked before anything is loaded, so a bad checkpoint leaves the model
     * untouched. Tensors are read one at a time, widened to float32 when stored as F16/BF16 (DJL must not
     * see BF16), and owned by {@code manager}.
     *
     * @param ignore checkpoint names to skip silently (e.g. legacy {@code rotary_emb.inv_freq})
     * @param optional model entries the checkpoint may omit (e.g. a tied {@code lm_head.weight})
     * @throws IllegalArgumentException naming the missing/unexpected keys, or the key and both shapes
     */
    public static void loadSafetensors(Module model, Path dirOrFile, NDManager manager, Predicate<String> ignore,
                                       Set<String> optional) throws IOException {
        loadSafetensors(model, dirOrFile, manager, ignore, optional, UnaryOperator.identity());
    }

    /**
     * As {@link #loadSafetensors(Module, Path, NDManager, Predicate, Set)}, with checkpoint names mapped to
     * model names first, for checkpoints saved under another layout (e.g. GPT-2's bare {@code h.0.attn...}
     * keys for a model that has them under {@code transformer.}). {@code ignore} and unexpected keys see the
     * checkpoint's own names; missing keys are model names.
     *
     * @param rename checkpoint name to model name
     */
    public static void loadSafetensors(Module model, Path dirOrFile, NDManager manager, Predicate<String> ignore,
                                       Set<String> optional, UnaryOperator<String> rename) throws IOException {
        LinkedHashMap<String, Param> own = model.namedStateEntries();
        // 4-bit layers: their packed weight is loaded from a bitsandbytes quant state, or quantised from a float weight
        LinkedHashMap<String, Linear4bit> quantized = new LinkedHashMap<>();
        model.namedModules().forEach((path, m) -> {
            if (m instanceof Linear4bit q) {
                String key = path.isEmpty() ? "weight" : path + ".weight";
                quantized.put(key, q);
                own.remove(key);
            }
        });
        try (ShardedSafetensors st = ShardedSafetensors.open(dirOrFile)) {
            List<String> unexpected = new ArrayList<>();
            LinkedHashMap<String, String> quantizedNames = new LinkedHashMap<>(); // model weight key -> checkpoint name
            Map<String, String> byModelName = new LinkedHashMap<>();
            for (String name : st.names()) {
                byModelName.putIfAbsent(rename.apply(name), name);
            }
            for (String key : quantized.keySet()) {
                if (byModelName.containsKey(key)) {
                    quantizedNames.put(key, byModelName.get(key));
                }
            }
            // model name -> checkpoint name
            LinkedHashMap<String, String> toLoad = new LinkedHashMap<>();
            for (String name : st.names()) {
                if (ignore.test(name)) {
                    continue;
                }
                String target = rename.apply(name);
                if (quantizedNames.containsValue(name) || isQuantStateOf(target, quantizedNames.keySet())) {
                    continue;
                }
                if (own.containsKey(target) && !toLoad.containsKey(target)) {
                    toLoad.put(target, name);
                } else {
                    unexpected.add(name);
                }
            }
            List<String> missing = new ArrayList<>();
            for (String name : own.keySet()) {
                if (!toLoad.containsKey(name) && !optional.contains(name)) {
                    missing.add(name);
                }
            }
            for (String key : quantized.keySet()) {
                if (!quantizedNames.containsKey(key)) {
                    missing.add(key);
                }
            }
            if (!missing.isEmpty() || !unexpected.isEmpty()) {
                throw new IllegalArgumentException(dirOrFile + ": checkpoint does not match the model: missing keys "
                        + missing + ", unexpected keys " + unexpected);
            }
            for (Map.Entry<String, String> e : toLoad.entrySet()) {
                String name = e.getValue();
                TensorInfo info = st.info(name);
                Shape got = new Shape(info.shape());
                Shape want = own.get(e.getKey()).shape();
                if (!got.equals(want)) {
                    throw new IllegalArgumentException(dirOrFile + ": size mismatch for '" + name
                            + "': checkpoint has shape " + got + ", model expects " + want);
                }
                if (!info.dtype().isFloating()) {
                    throw new IllegalArgumentException(dirOrFile + ": tensor '" + name + "' has dtype "
                            + info.dtype() + ", expected a floating-point type");
                }
            }
            String source = dirOrFile.toString();
            for (Map.Entry<String, String> e : quantizedNames.entrySet()) {
                Linear4bit q = quantized.get(e.getKey());
                String ckptWeight = e.getValue();
                long[] want = {q.outFeatures(), q.inFeatures()};
                TensorInfo info = st.info(ckptWeight);
                if (info.dtype().isFloating()) {
                    // a float checkpoint loaded in 4 bits: quantise this tensor now, keep no float copy
                    // (GPT-2's Conv1D stores (in, out): transposed first, as transformers does)
                    long[] stored = q.fromConv1D() ? new long[] {want[1], want[0]} : want;
                    if (!java.util.Arrays.equals(info.shape(), stored)) {
                        throw new IllegalArgumentException(dirOrFile + ": size mismatch for '" + ckptWeight
                                + "': checkpoint has shape " + new Shape(info.shape()) + ", model expects "
                                + new Shape(stored));
                    }
                    try (NDArray raw = st.toNDArray(ckptWeight, manager); NDArray t = q.fromConv1D() ? raw.transpose() : null) {
                        q.quantizeFrom(t != null ? t : raw);
                    }
                } else {
                    Quantizer.Packed packed = BnbFormat.fromTensors(ckptWeight, n -> st.contains(n)
                            ? TensorData.of(st.info(n).dtype(), st.info(n).shape(), st.bytes(n)) : null, want, source);
                    q.setQuantized(manager, packed);
                }
            }
            for (Map.Entry<String, String> e : toLoad.entrySet()) {
                Param p = own.get(e.getKey());
                NDArray raw = st.toNDArray(e.getValue(), manager);
                DataType target = p.data().getDataType();
                NDArray data = raw;
                if (raw.getDataType() != target) {
                    data = raw.toType(target, false);
                    raw.close();
                }
                p.setData(data);
            }
        }
    }

    /** The module paths owning the parameter names {@code names} ({@code a.b.weight} -> {@code a.b}), in order. */
    public static java.util.Set<String> owners(List<String> names) {
        java.util.Set<String> owners = new java.util.LinkedHashSet<>();
        for (String k : names) {
            owners.add(k.contains(".") ? k.substring(0, k.lastIndexOf('.')) : "");
        }
        return owners;
    }

    private static boolean isQuantStateOf(String name, java.util.Set<String> weightKeys) {
        if (!BnbFormat.isQuantStateKey(name)) {
            return false;
        }
        for (String k : weightKeys) {
            if (name.startsWith(k + ".")) {
                return true;
            }
        }
        return false;
    }

    /**
     * The module's state as {@link TensorData} by name (copies in each array's dtype), ready for
     * {@code SafetensorsWriter}; with a model whose {@code stateDict()} omits tied aliases, so does this.
     */
    public static Map<String, TensorData> toTensorData(Map<String, NDArray> stateDict) {
        LinkedHashMap<String, TensorData> out = new LinkedHashMap<>();
        stateDict.forEach((k, v) -> out.put(k, TensorData.ofNDArray(v)));
        return out;
    }

    private static final ThreadLocal<BitsAndBytesConfig> LOAD_IN_4BIT = new ThreadLocal<>();

    /**
     * Runs {@code body} (a {@code fromPretrained}) with 4-bit loading requested: every Linear that {@code config} does
     * not skip is quantised as its weight is read. A checkpoint that is already 4-bit ({@code quantization_config} in
     * its {@code config.json}) is loaded in 4 bits whether or not this is used.
     */
    public static <T> T loadingIn4bit(BitsAndBytesConfig config, IoSupplier<T> body) throws IOException {
        BitsAndBytesConfig prev = LOAD_IN_4BIT.get();
        LOAD_IN_4BIT.set(config);
        try {
            return body.get();
        } finally {
            if (prev == null) {
                LOAD_IN_4BIT.remove();
            } else {
                LOAD_IN_4BIT.set(prev);
            }
        }
    }

    /** A supplier that may throw {@link IOException}. */
    @FunctionalInterface
    public interface IoSupplier<T> {
        T get() throws IOException;
    }

    /** Module paths whose weight a checkpoint stores in 4 bits ({@code P.weight.quant_state.bitsandbytes__*}). */
    private static java.util.Set<String> quantizedInCheckpoint(Path dir) throws IOException {
        java.util.Set<String> out = new java.util.LinkedHashSet<>();
        try (ShardedSafetensors st = ShardedSafetensors.open(dir)) {
            for (String name : st.names()) {
                int i = name.indexOf(".weight.quant_state.bitsandbytes__");
                if (i > 0) {
                    out.add(name.substring(0, i));
                }
            }
        }
        return out;
    }

    /** The 4-bit settings of a load: the checkpoint's own {@code quantization_config}, else the requested ones. */
    private static BitsAndBytesConfig quantizationOf(ModelConfig raw, String source) {
        if (raw.has("quantization_config")) {
            BitsAndBytesConfig fromFile = BitsAndBytesConfig.fromJson(raw.json().get("quantization_config"), source);
            BitsAndBytesConfig requested = LOAD_IN_4BIT.get();
            // keep the caller's skip list when the file does not name one
            return requested != null && fromFile.skipModules() == null
                    ? fromFile.withSkipModules(requested.skipModules()) : fromFile;
        }
        return LOAD_IN_4BIT.get();
    }

    /** Builds a model of a parsed config in a manager (the constructor of a {@code PreTrainedModel}). */
    @FunctionalInterface
    public interface Builder<C, M> {
        M build(NDManager manager, C config);
    }

    /** Fills a freshly built model from a model directory. */
    @FunctionalInterface
    public interface Loader<M> {
        void load(M model, Path dir) throws IOException;
    }

    /**
     * Linear layers become 4-bit before the weights load, so each float weight is quantised as it is read (the
     * deferred float weights are never written). A bitsandbytes checkpoint gets exactly the layers it stores in 4 bits
     * (by their quant_state tensors).
     */
    private static void quantizeForLoading(PreTrainedModel m, BitsAndBytesConfig quant, ModelConfig raw, Path dir)
            throws IOException {
        java.util.Set<String> stored = raw.has("quantization_config") ? quantizedInCheckpoint(dir) : null;
        if (stored == null || stored.isEmpty()) {
            Quantization.quantize(m, quant);
        } else {
            Quantization.quantize(m, quant, path -> stored.stream()
                    .noneMatch(p -> path.equals(p) || path.endsWith("." + p)));
        }
        m.setConfig(m.config().with("quantization_config", quant.toJson()));
    }

    /**
     * The body every {@code fromPretrained(dir)} shares: parse {@code config.json}, build the model in a new
     * manager, load the weights, remember the directory, switch to eval mode. The manager is closed when any
     * step fails, so a bad checkpoint leaks no native memory.
     */
    public static <C, M extends PreTrainedModel> M fromPretrained(Path dir, Function<ModelConfig, C> parse,
                                                                  Builder<C, M> build, Loader<M> load)
            throws IOException {
        ModelConfig raw = ModelConfig.read(dir.resolve("config.json"));
        C config = parse.apply(raw);
        BitsAndBytesConfig quant = quantizationOf(raw, dir.resolve("config.json").toString());
        NDManager manager = Torch.newManager();
        // Built with deferred init (transformers' no_init_weights): the checkpoint's tensors are never randomly
        // initialised first, so loading costs no random-number time and, for 4-bit loading, no float32 peak.
        Init.Deferral deferral = Init.defer();
        try {
            M m;
            try {
                m = build.build(manager, config);
                if (quant != null) {
                    quantizeForLoading(m, quant, raw, dir);
                }
            } finally {
                deferral.close();
            }
            load.load(m, dir);
            List<String> fresh = deferral.remaining(m);
            if (!fresh.isEmpty()) {
                m.initMissingWeights(fresh);
                List<String> still = deferral.remaining(m);
                if (!still.isEmpty()) {
                    throw new IllegalStateException(dir + ": " + still + " were neither in the checkpoint nor initialised");
                }
            }
            m.setNameOrPath(dir.toString());
            m.eval();
            return m;
        } catch (IOException | RuntimeException e) {
            manager.close();
            throw e;
        }
    }
}
