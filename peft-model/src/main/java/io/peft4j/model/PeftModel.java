package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.GenerationResult;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.lora.LoraModel;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A model with PEFT adapters, as Hugging Face's {@code PeftModel}: its child {@code base_model} is the
 * tuner (e.g. {@link LoraModel}) whose child {@code model} is the user's model, modified in place. Parameter
 * paths therefore start with {@code base_model.model.}, exactly as in peft.
 *
 * <pre>{@code
 * PeftModel peft = PeftModel.getPeftModel(model, LoraConfig.builder().r(8).targetModules("q_proj", "v_proj").build());
 * peft.printTrainableParameters();
 * peft.saveAdapter(dir);
 * PeftModel again = PeftModel.fromPretrained(freshModel, dir);
 * }</pre>
 */
public class PeftModel extends Module implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(PeftModel.class);
    public static final String DEFAULT_ADAPTER = "default";

    private final Map<String, PeftConfig> configs = new LinkedHashMap<>();
    private String activeAdapter;

    protected PeftModel(Module model, PeftConfig config, String adapterName) {
        warnIfAlreadyAdapted(model);
        if (adapterName.length() > 0 && "lora_".contains(adapterName)) {
            LOG.warn("Adapter name '{}' should not be contained in the prefix 'lora_'. This may lead to "
                    + "reinitialization of the adapter weights during loading.", adapterName);
        }
        registerModule("base_model", createTuner(model, config, adapterName));
        configs.put(adapterName, tuner().peftConfig().get(adapterName));
        activeAdapter = adapterName;
    }

    private static void warnIfAlreadyAdapted(Module model) {
        boolean adapted = model.namedModules().values().stream()
                .anyMatch(m -> m instanceof io.peft4j.tuners.TunerLayer);
        if (adapted) {
            LOG.warn("You are trying to modify a model with PEFT for a second time. If you want to reload the "
                    + "model with a different config, make sure to start from a fresh model.");
        }
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static BaseTuner<?> createTuner(Module model, PeftConfig config, String adapterName) {
        if (config instanceof LoraConfig lora) {
            return new LoraModel(model, lora, adapterName);
        }
        if (config instanceof io.peft4j.config.IA3Config ia3) {
            return new io.peft4j.tuners.ia3.IA3Model(model, ia3, adapterName);
        }
        throw new UnsupportedOperationException("peft_type " + config.peftType() + " is not supported yet by "
                + "PeftModel (supported: LORA, IA3)");
    }

    // ---- construction -----------------------------------------------------------------------------

    /** Wraps {@code model} (in place) with adapter {@code "default"}; the task type picks the subclass. */
    public static PeftModel getPeftModel(Module model, PeftConfig config) {
        return getPeftModel(model, config, DEFAULT_ADAPTER);
    }

    public static PeftModel getPeftModel(Module model, PeftConfig config, String adapterName) {
        PeftConfig c = config;
        if (model instanceof PreTrainedModel p && p.nameOrPath() != null) {
            if (c.baseModelNameOrPath() != null && !c.baseModelNameOrPath().equals(p.nameOrPath())) {
                LOG.warn("The PEFT config's `base_model_name_or_path` was renamed from '{}' to '{}'.",
                        c.baseModelNameOrPath(), p.nameOrPath());
            }
            c = withField(c, "base_model_name_or_path", p.nameOrPath());
        }
        return create(model, c, adapterName);
    }

    /** The task type picks the subclass; classification tasks first get peft's automatic modules_to_save. */
    private static PeftModel create(Module model, PeftConfig config, String adapterName) {
        PeftConfig c = withTaskModulesToSave(config);
        if (c.taskType() == TaskType.CAUSAL_LM) {
            return new PeftModelForCausalLM(model, c, adapterName);
        }
        if (c.taskType() == TaskType.SEQ_CLS) {
            return new PeftModelForSequenceClassification(model, c, adapterName);
        }
        return new PeftModel(model, c, adapterName);
    }

    /**
     * peft appends {@code ["classifier", "score"]} (SEQ_CLS, TOKEN_CLS) or {@code ["qa_outputs"]} (QUESTION_ANS)
     * to the config's {@code modules_to_save}, duplicates included, so a saved config reads as peft's does.
     */
    static PeftConfig withTaskModulesToSave(PeftConfig config) {
        List<String> heads = switch (config.taskType() == null ? "" : config.taskType().name()) {
            case "SEQ_CLS", "TOKEN_CLS" -> List.of("classifier", "score");
            case "QUESTION_ANS" -> List.of("qa_outputs");
            default -> List.of();
        };
        ObjectNode node = config.toJsonNode();
        if (heads.isEmpty() || !node.has("modules_to_save")) {
            return config;
        }
        com.fasterxml.jackson.databind.node.ArrayNode list = node.putArray("modules_to_save");
        com.fasterxml.jackson.databind.JsonNode old = config.toJsonNode().get("modules_to_save");
        if (old != null && old.isArray()) {
            old.forEach(list::add);
        }
        heads.forEach(list::add);
        return PeftConfig.fromJsonNode(node, config.sourceName());
    }

    /**
     * Loads an adapter saved by HF peft (or by {@link #saveAdapter}) onto {@code model}, frozen for inference.
     */
    public static PeftModel fromPretrained(Module model, Path dir) {
        return fromPretrained(model, dir, DEFAULT_ADAPTER, false);
    }

    public static PeftModel fromPretrained(Module model, Path dir, String adapterName, boolean isTrainable) {
        PeftConfig config = PeftConfig.fromPretrained(dir);
        config = withField(config, "inference_mode", !isTrainable);
        PeftModel peft = create(model, config, adapterName);
        peft.loadWeights(dir, adapterName);
        if (!isTrainable) {
            peft.eval();
        }
        return peft;
    }

    /** A copy of a config with one JSON field changed (works for every config type). */
    static PeftConfig withField(PeftConfig config, String field, Object value) {
        ObjectNode node = config.toJsonNode();
        if (value == null) {
            node.putNull(field);
        } else if (value instanceof Boolean b) {
            node.put(field, b);
        } else {
            node.put(field, value.toString());
        }
        return PeftConfig.fromJsonNode(node, config.sourceName());
    }

    // ---- adapters ----------------------------------------------------------------------------------

    @SuppressWarnings("unchecked")
    public BaseTuner<PeftConfig> tuner() {
        return (BaseTuner<PeftConfig>) child("base_model");
    }

    /** The wrapped model (modified in place by the adapters). */
    public Module baseModel() {
        return tuner().model();
    }

    public Map<String, PeftConfig> peftConfig() {
        Map<String, PeftConfig> out = new LinkedHashMap<>(configs);
        out.putAll(tuner().peftConfig());
        return Collections.unmodifiableMap(out);
    }

    public String activeAdapter() {
        return activeAdapter;
    }

    /** Adds an inactive, frozen adapter; {@link #setAdapter} activates it. */
    @SuppressWarnings("unchecked")
    public void addAdapter(String adapterName, PeftConfig config) {
        if (config.peftType() != configs.get(activeAdapter).peftType()) {
            throw new IllegalArgumentException("Cannot combine adapters with different peft types. Found "
                    + configs.get(activeAdapter).peftType() + " and " + config.peftType() + ".");
        }
        ((BaseTuner<PeftConfig>) tuner()).injectAdapter(adapterName, withTaskModulesToSave(config));
        configs.put(adapterName, tuner().peftConfig().get(adapterName));
    }

    /**
     * Combines LoRA adapters into a new inactive adapter {@code adapterName} (peft's {@code add_weighted_adapter},
     * {@code "linear"} or {@code "cat"}); activate it with {@link #setAdapter}.
     */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String adapterName,
                                   String combinationType) {
        if (!((Object) tuner() instanceof LoraModel lora)) {
            throw new UnsupportedOperationException("add_weighted_adapter needs LoRA adapters");
        }
        if (configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter with name " + adapterName + " already exists.");
        }
        lora.addWeightedAdapter(adapters, weights, adapterName, combinationType);
        configs.put(adapterName, tuner().peftConfig().get(adapterName));
    }

    /** Activates one adapter (and makes it trainable unless it was loaded for inference). */
    public void setAdapter(String adapterName) {
        if (!configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter " + adapterName + " not found; available: " + configs.keySet());
        }
        tuner().setAdapter(List.of(adapterName));
        activeAdapter = adapterName;
    }

    public void deleteAdapter(String adapterName) {
        tuner().deleteAdapter(adapterName);
        configs.remove(adapterName);
        activeAdapter = tuner().activeAdapters().isEmpty() ? null : tuner().activeAdapters().get(0);
    }

    /** Loads another saved adapter under {@code adapterName} (inactive until {@link #setAdapter}). */
    public void loadAdapter(Path dir, String adapterName, boolean isTrainable) {
        PeftConfig config = withField(PeftConfig.fromPretrained(dir), "inference_mode", !isTrainable);
        addAdapter(adapterName, config);
        loadWeights(dir, adapterName);
    }

    private void loadWeights(Path dir, String adapterName) {
        Path file = AdapterIO.weightsFile(dir);
        try {
            AdapterIO.loadInto(file, tuner().adapterStateDict(adapterName, "base_model."), tuner().prefix());
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Runs with adapters disabled until the returned scope is closed:
     * {@code try (var off = peft.disableAdapter()) { ... }}.
     */
    public AdapterScope disableAdapter() {
        tuner().enableAdapterLayers(false);
        return () -> tuner().enableAdapterLayers(true);
    }

    /** A scope that restores adapters when closed. */
    @FunctionalInterface
    public interface AdapterScope extends AutoCloseable {
        @Override
        void close();
    }

    // ---- forward -----------------------------------------------------------------------------------

    /** Forward of a plain module (e.g. an MLP). */
    @Override
    public NDArray forward(NDArray input) {
        return baseModel().forward(input);
    }

    /** Forward of a transformers-style model. */
    public ModelOutput forward(ModelInput input) {
        Module m = baseModel();
        if (!(m instanceof PreTrainedModel p)) {
            throw new UnsupportedOperationException(m.getClass().getSimpleName() + " takes a single tensor; call "
                    + "forward(NDArray)");
        }
        return p.forward(input);
    }

    /**
     * Generates text ids with the adapters as they are now: active, merged ({@link #mergeAdapter()}), or off
     * inside {@link #disableAdapter()}, as HF's {@code peft_model.generate(...)}. See {@link Generation}.
     */
    public GenerationResult generate(List<long[]> prompts, GenerationConfig config) {
        return Generation.generate(this::forward, prompts, config);
    }

    /** One prompt: the prompt followed by the generated ids. */
    public long[] generate(long[] prompt, GenerationConfig config) {
        return generate(List.of(prompt), config).completion(0);
    }

    /**
     * Inference with a different adapter per batch row (peft's {@code adapter_names}): row {@code i} uses adapter
     * {@code adapterNames.get(i)}, or the base model for {@code "__base__"}. Not while merged, training, or with DoRA.
     */
    public ModelOutput forward(ModelInput input, List<String> adapterNames) {
        checkMixedBatch(adapterNames, input.inputIds() != null ? input.inputIds().getShape().get(0)
                : input.inputsEmbeds().getShape().get(0));
        return io.peft4j.tuners.MixedBatch.with(adapterNames, () -> forward(input));
    }

    /** {@link #forward(ModelInput, List)} for a plain module. */
    public NDArray forward(NDArray input, List<String> adapterNames) {
        checkMixedBatch(adapterNames, input.getShape().get(0));
        return io.peft4j.tuners.MixedBatch.with(adapterNames, () -> forward(input));
    }

    private void checkMixedBatch(List<String> adapterNames, long batch) {
        if (adapterNames.size() != batch) {
            throw new IllegalArgumentException("Length of adapter_names should be the same as the number of inputs, but got "
                    + adapterNames.size() + " and " + batch + " respectively.");
        }
        if (isTraining()) {
            throw new IllegalArgumentException("Cannot pass `adapter_names` when the model is in training mode.");
        }
        for (String a : adapterNames) {
            if (!a.equals(io.peft4j.tuners.MixedBatch.BASE) && !configs.containsKey(a)) {
                throw new IllegalArgumentException("Trying to infer with non-existing adapter(s): " + a
                        + " (adapters: " + configs.keySet() + ", or " + io.peft4j.tuners.MixedBatch.BASE + ")");
            }
            if (configs.containsKey(a) && configs.get(a) instanceof LoraConfig lc && lc.useDora()) {
                throw new IllegalArgumentException("Cannot pass `adapter_names` when DoRA is enabled (adapter " + a + ").");
            }
        }
        if (tuner().tunerLayers().values().stream().anyMatch(io.peft4j.tuners.TunerLayer::merged)) {
            throw new IllegalArgumentException("Cannot pass `adapter_names` when the model is merged; unmerge first.");
        }
    }

    // ---- parameters --------------------------------------------------------------------------------

    /** {@code [trainable, total]} parameter counts, shared parameters counted once. */
    public long[] getNbTrainableParameters() {
        long trainable = 0;
        long total = 0;
        for (Param p : namedParameters().values()) {
            total += p.numel();
            if (p.requiresGrad()) {
                trainable += p.numel();
            }
        }
        return new long[] {trainable, total};
    }

    /** The line HF peft prints, e.g. {@code trainable params: 3,584 || all params: 110,400 || trainable%: 3.2464}. */
    public String trainableParametersLine() {
        long[] n = getNbTrainableParameters();
        return String.format(Locale.ROOT, "trainable params: %,d || all params: %,d || trainable%%: %.4f",
                n[0], n[1], 100.0 * n[0] / n[1]);
    }

    public void printTrainableParameters() {
        System.out.println(trainableParametersLine());
    }

    /** Parameters that require grad, for the optimizer. */
    public List<Param> trainableParameters() {
        List<Param> out = new ArrayList<>();
        for (Param p : namedParameters().values()) {
            if (p.requiresGrad()) {
                out.add(p);
            }
        }
        return out;
    }

    // ---- merge -------------------------------------------------------------------------------------

    /** Merges the active adapters into the base weights, reversibly. */
    public void mergeAdapter() {
        tuner().mergeAdapter(null, false);
    }

    public void mergeAdapter(List<String> adapterNames, boolean safeMerge) {
        tuner().mergeAdapter(adapterNames, safeMerge);
    }

    public void unmergeAdapter() {
        tuner().unmergeAdapter();
    }

    /** Merges the active adapters and returns the plain base model; this wrapper is unusable afterwards. */
    public Module mergeAndUnload() {
        return mergeAndUnload(false, null);
    }

    /**
     * @param safeMerge refuse (and leave the model unchanged) when a merged weight would be NaN or infinite
     */
    public Module mergeAndUnload(boolean safeMerge, List<String> adapterNames) {
        Module m = tuner().mergeAndUnload(true, safeMerge, adapterNames);
        configs.clear();
        return m;
    }

    /** Removes the adapters without merging and returns the original base model. */
    public Module unload() {
        Module m = tuner().mergeAndUnload(false, false, null);
        configs.clear();
        return m;
    }

    // ---- save --------------------------------------------------------------------------------------

    /** Saves every adapter in the HF layout ({@code default} at the top, others in sub-directories). */
    public void saveAdapter(Path dir) {
        saveAdapter(dir, null);
    }

    /** Same as {@link #saveAdapter(Path)}, HF's name. */
    public void savePretrained(Path dir) {
        saveAdapter(dir, null);
    }

    /**
     * Saves the selected adapters (all when null) atomically: a failure leaves an earlier save intact.
     */
    public void saveAdapter(Path dir, List<String> selectedAdapters) {
        List<String> names = selectedAdapters == null ? new ArrayList<>(configs.keySet()) : selectedAdapters;
        List<AdapterIO.Entry> entries = new ArrayList<>();
        for (String name : names) {
            PeftConfig config = tuner().peftConfig().get(name);
            if (config == null) {
                throw new IllegalArgumentException("Adapter " + name + " not found; available: " + configs.keySet());
            }
            if (config.baseModelNameOrPath() == null && baseModel() instanceof PreTrainedModel p
                    && p.nameOrPath() != null) {
                config = withField(config, "base_model_name_or_path", p.nameOrPath());
            }
            entries.add(new AdapterIO.Entry(DEFAULT_ADAPTER.equals(name) ? "" : name, config,
                    tuner().adapterStateDict(name, "base_model.")));
        }
        try {
            AdapterIO.writeAtomically(dir, entries);
        } catch (IOException e) {
            throw new UncheckedIOException("failed to save adapter to " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Closes the wrapped model when it owns native memory. */
    @Override
    public void close() {
        if (baseModel() instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }

    static boolean exists(Path p) {
        return Files.exists(p);
    }
}
