package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.PeftConfig;
import io.peft4j.nn.AtomicDirectory;
import io.peft4j.nn.F;
import io.peft4j.nn.Param;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Reads and writes adapters in the Hugging Face layout: {@code adapter_config.json} and
 * {@code adapter_model.safetensors} with peft's key names.
 */
public final class AdapterIO {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(AdapterIO.class);
    public static final String CONFIG_NAME = "adapter_config.json";
    public static final String WEIGHTS_NAME = "adapter_model.safetensors";
    public static final String PICKLE_WEIGHTS_NAME = "adapter_model.bin";

    private AdapterIO() {}

    /** One adapter to write: its config and its tensors under saved keys. */
    record Entry(String subdir, PeftConfig config, Map<String, Param> tensors) {}

    /**
     * Writes every entry into {@code dir} atomically (see {@link AtomicDirectory}), keeping files already there.
     * A failure leaves an earlier save untouched.
     */
    static void writeAtomically(Path dir, List<Entry> entries) throws IOException {
        AtomicDirectory.write(dir, true, tmp -> {
            for (Entry e : entries) {
                Path out = e.subdir().isEmpty() ? tmp : tmp.resolve(e.subdir());
                Files.createDirectories(out);
                Map<String, TensorData> tensors = new TreeMap<>();
                for (Map.Entry<String, Param> t : e.tensors().entrySet()) {
                    NDArray data = t.getValue().data();
                    requireFinite(data, t.getKey(), "adapter to save");
                    tensors.put(t.getKey(), TensorData.ofNDArray(data));
                }
                if (tensors.isEmpty()) {
                    throw new IOException("adapter '" + (e.subdir().isEmpty() ? "default" : e.subdir())
                            + "' has no tensors to save");
                }
                SafetensorsWriter.write(out.resolve(WEIGHTS_NAME), tensors, Map.of("format", "pt"));
                e.config().save(out);
            }
        });
    }

    /** The weights file of an adapter directory, with a clear error for the pickle format or a missing file. */
    static Path weightsFile(Path dir) {
        Path st = dir.resolve(WEIGHTS_NAME);
        if (Files.isRegularFile(st)) {
            return st;
        }
        if (Files.isRegularFile(dir.resolve(PICKLE_WEIGHTS_NAME))) {
            throw new IllegalArgumentException(dir + ": only " + PICKLE_WEIGHTS_NAME + " found; peft4j reads "
                    + WEIGHTS_NAME + " only (pickle files can run code). Convert it in Python with "
                    + "`PeftModel.from_pretrained(...).save_pretrained(dir, safe_serialization=True)`.");
        }
        throw new IllegalArgumentException(dir + ": no " + WEIGHTS_NAME + " found");
    }

    /**
     * Copies checkpoint tensors into the adapter's parameters. Keys without the {@code base_model.model.}
     * prefix (adapters saved by the transformers integration) are accepted. Unknown, missing, mis-shaped or
     * non-finite tensors fail with a message naming the file and keys.
     */
    /** @param tunerPrefix e.g. {@code lora_}: missing keys without it (modules_to_save heads) only warn; null: all required */
    static void loadInto(Path file, Map<String, Param> expected, String tunerPrefix) throws IOException {
        try (SafetensorsFile st = SafetensorsFile.open(file)) {
            Map<String, String> byModelKey = new LinkedHashMap<>();
            List<String> unexpected = new ArrayList<>();
            for (String name : st.names()) {
                String key = name;
                if (!expected.containsKey(key) && !key.startsWith("base_model.model.")) {
                    key = "base_model.model." + key;
                }
                if (!expected.containsKey(key) && key.endsWith(".lora_magnitude_vector")) {
                    key = key + ".weight";
                }
                if (expected.containsKey(key)) {
                    byModelKey.put(key, name);
                } else {
                    unexpected.add(name);
                }
            }
            List<String> missing = new ArrayList<>();
            for (String k : expected.keySet()) {
                if (!byModelKey.containsKey(k)) {
                    missing.add(k);
                }
            }
            if (!unexpected.isEmpty()) {
                throw new IllegalArgumentException(file + ": " + unexpected.size() + " tensor(s) do not belong to any "
                        + "adapter module of this model: " + head(unexpected) + "; the model expects keys like "
                        + head(new ArrayList<>(expected.keySet())) + ". Was the adapter trained on another "
                        + "architecture or with other target_modules?");
            }
            // A missing modules_to_save copy keeps the base module's values (peft only reports tuner keys); a
            // missing adapter tensor would leave a random or zero adapter, so it is an error.
            List<String> missingAuxiliary = tunerPrefix == null ? List.of()
                    : missing.stream().filter(k -> !k.contains("." + tunerPrefix)).toList();
            if (!missingAuxiliary.isEmpty()) {
                LOG.warn("{}: no tensors for {}; those modules keep the base model's weights", file, head(missingAuxiliary));
                missing.removeAll(missingAuxiliary);
            }
            if (!missing.isEmpty()) {
                throw new IllegalArgumentException(file + ": Found missing adapter keys while loading the "
                        + "checkpoint: " + head(missing));
            }
            for (Map.Entry<String, String> e : byModelKey.entrySet()) {
                Param p = expected.get(e.getKey());
                String name = e.getValue();
                Shape want = p.shape();
                Shape got = new Shape(st.info(name).shape());
                if (!want.equals(got)) {
                    throw new IllegalArgumentException(file + ": tensor '" + name + "' has shape " + got
                            + " but the model's " + e.getKey() + " expects " + want
                            + " (different rank r or a different base model?)");
                }
            }
            for (Map.Entry<String, String> e : byModelKey.entrySet()) {
                Param p = expected.get(e.getKey());
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    NDArray loaded = st.toNDArray(e.getValue(), p.data().getManager());
                    requireFinite(loaded, file + ": tensor '" + e.getValue() + "'", "loaded adapter");
                    NDArray typed = loaded.toType(p.data().getDataType(), false);
                    p.setData(typed == loaded ? loaded : typed);
                }
            }
        }
    }

    private static void requireFinite(NDArray a, String what, String context) {
        if (!F.allFinite(a)) {
            throw new IllegalArgumentException(what + " contains NaN or infinite values (" + context + ")");
        }
    }

    private static String head(List<String> keys) {
        return keys.size() <= 5 ? keys.toString() : keys.subList(0, 5) + " ... (" + keys.size() + " in total)";
    }
}
