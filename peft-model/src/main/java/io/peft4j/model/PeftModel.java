package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.AdaLoraConfig;
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
import io.peft4j.config.PromptLearningConfig;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.tuners.BaseTuner;
import io.peft4j.tuners.ModulesToSaveWrapper;
import io.peft4j.tuners.adalora.AdaLoraModel;
import io.peft4j.tuners.lora.LoraGA;
import io.peft4j.tuners.lora.LoraModel;
import io.peft4j.tuners.prompt.PromptLearning;
import io.peft4j.tuners.prompt.PromptLearningEncoder;
import io.peft4j.tuners.prompt.PromptTokenizer;
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
 * A model with PEFT adapters, as Hugging Face's {@code PeftModel}.
 *
 * <p>For the injectable methods (LoRA) its child {@code base_model} is the tuner (e.g. {@link LoraModel}) whose
 * child {@code model} is the user's model, modified in place: parameter paths start with {@code base_model.model.}.
 *
 * <p>For the prompt-learning methods (prompt tuning, P-tuning, prefix tuning) {@code base_model} is the user's model
 * itself, frozen and unmodified; the trainable encoders live in {@code prompt_encoder.<adapter>} and
 * {@code word_embeddings} is the model's input embedding (the same module, counted once). Its forward prepends the
 * virtual tokens (or, for prefix tuning, per-layer key/value prefixes) exactly as peft does; see
 * {@link PromptForward}. Paths therefore read {@code base_model.<hf path>} and
 * {@code prompt_encoder.default.embedding.weight}, as in peft.
 *
 * <pre>{@code
 * PeftModel peft = PeftModel.getPeftModel(model, LoraConfig.builder().r(8).targetModules("q_proj", "v_proj").build());
 * peft.printTrainableParameters();
 * peft.saveAdapter(dir);
 * PeftModel again = PeftModel.fromPretrained(freshModel, dir);
 * }</pre>
 */
public class PeftModel extends Module implements AutoCloseable, io.peft4j.nn.train.TrainerCallback.Provider {
    private static final Logger LOG = LoggerFactory.getLogger(PeftModel.class);
    public static final String DEFAULT_ADAPTER = "default";

    private final Map<String, PeftConfig> configs = new LinkedHashMap<>();
    private String activeAdapter;
    /** Prompt learning: {@code base_model} is the model itself and the adapters are prompt encoders. */
    private final boolean promptLearning;
    /** Prompt learning inside {@link #disableAdapter()}: forward goes straight to the base model. */
    private boolean promptDisabled;
    /** Warnings peft repeats on every call, given once per model here. */
    final java.util.Set<String> warned = java.util.Collections.synchronizedSet(new java.util.HashSet<>());

    protected PeftModel(Module model, PeftConfig config, String adapterName) {
        this(model, config, adapterName, null);
    }

    /**
     * @param tokenizer prompt tuning's TEXT initialisation; null to load the one named by
     *                  {@code tokenizer_name_or_path} (needs {@code peft-hub} on the class path)
     */
    protected PeftModel(Module model, PeftConfig config, String adapterName, PromptTokenizer tokenizer) {
        warnIfAlreadyAdapted(model);
        this.promptLearning = config.isPromptLearning();
        if (promptLearning) {
            if (!(model instanceof PreTrainedModel)) {
                throw new IllegalArgumentException(config.peftType() + " needs a transformers-style model "
                        + "(PreTrainedModel with a config and input embeddings), got " + model.getClass().getSimpleName());
            }
            registerModule("base_model", model);
            registerModule("prompt_encoder", new ModuleDict());
            addPromptAdapter(adapterName, (PromptLearningConfig) config, tokenizer);
            activeAdapter = adapterName;
            return;
        }
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
        if (config instanceof AdaLoraConfig adalora) {
            return new AdaLoraModel(model, adalora, adapterName);
        }
        throw new UnsupportedOperationException("peft_type " + config.peftType() + " is not supported yet by "
                + "PeftModel (supported: LORA, ADALORA, IA3, PROMPT_TUNING, P_TUNING, PREFIX_TUNING)");
    }

    // ---- construction -----------------------------------------------------------------------------

    /** Wraps {@code model} (in place) with adapter {@code "default"}; the task type picks the subclass. */
    public static PeftModel getPeftModel(Module model, PeftConfig config) {
        return getPeftModel(model, config, DEFAULT_ADAPTER);
    }

    public static PeftModel getPeftModel(Module model, PeftConfig config, String adapterName) {
        return getPeftModel(model, config, adapterName, null);
    }

    /**
     * As {@link #getPeftModel(Module, PeftConfig, String)}, with the tokenizer prompt tuning's TEXT initialisation
     * encodes {@code prompt_tuning_init_text} with (null: load {@code tokenizer_name_or_path}).
     */
    public static PeftModel getPeftModel(Module model, PeftConfig config, String adapterName,
                                         PromptTokenizer tokenizer) {
        PeftConfig c = config;
        if (model instanceof PreTrainedModel p && p.nameOrPath() != null) {
            if (c.baseModelNameOrPath() != null && !c.baseModelNameOrPath().equals(p.nameOrPath())) {
                LOG.warn("The PEFT config's `base_model_name_or_path` was renamed from '{}' to '{}'.",
                        c.baseModelNameOrPath(), p.nameOrPath());
            }
            c = withField(c, "base_model_name_or_path", p.nameOrPath());
        }
        requireLoraGaEstimates(model, c);
        return create(model, c, adapterName, tokenizer);
    }

    /** A new {@code lora_ga} adapter needs {@link LoraGA#preprocess} first; loading a saved one does not. */
    private static void requireLoraGaEstimates(Module model, PeftConfig config) {
        if (config instanceof LoraConfig lora && "lora_ga".equals(lora.initLoraWeights().name())) {
            LoraGA.requirePreprocessed(model, lora);
        }
    }

    /** The task type picks the subclass; classification tasks first get peft's automatic modules_to_save. */
    private static PeftModel create(Module model, PeftConfig config, String adapterName, PromptTokenizer tokenizer) {
        PeftConfig c = withTaskModulesToSave(config);
        if (c.isPromptLearning()) {
            PromptForward.checkTaskType(c);
        }
        if (c.taskType() == TaskType.CAUSAL_LM) {
            return new PeftModelForCausalLM(model, c, adapterName, tokenizer);
        }
        if (c.taskType() == TaskType.SEQ_CLS) {
            return new PeftModelForSequenceClassification(model, c, adapterName, tokenizer);
        }
        return new PeftModel(model, c, adapterName, tokenizer);
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
        checkTrainablePrompt(config, isTrainable);
        config = withField(config, "inference_mode", !isTrainable);
        PeftModel peft = create(model, config, adapterName, null);
        peft.loadWeights(dir, adapterName);
        if (!isTrainable) {
            peft.eval();
        }
        return peft;
    }

    /** peft refuses to load a prompt-learning adapter as trainable (only its encoded output is saved). */
    private static void checkTrainablePrompt(PeftConfig config, boolean isTrainable) {
        if (config.isPromptLearning() && isTrainable) {
            throw new IllegalArgumentException("Cannot set a prompt learning adapter to trainable when loading "
                    + "pretrained adapter (" + config.peftType() + " saves only the encoded prompt_embeddings).");
        }
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

    /** The tuner of an injectable method (LoRA); prompt-learning models have none. */
    @SuppressWarnings("unchecked")
    public BaseTuner<PeftConfig> tuner() {
        if (promptLearning) {
            throw new IllegalStateException("a prompt-learning PeftModel has no tuner: base_model is the model itself "
                    + "and the adapters are prompt encoders (see promptEncoder)");
        }
        return (BaseTuner<PeftConfig>) child("base_model");
    }

    /** True for prompt tuning, P-tuning and prefix tuning. */
    public boolean isPromptLearning() {
        return promptLearning;
    }

    /** The wrapped model (modified in place by injected adapters; untouched by prompt learning). */
    public Module baseModel() {
        return promptLearning ? child("base_model") : tuner().model();
    }

    public Map<String, PeftConfig> peftConfig() {
        if (promptLearning) {
            return Collections.unmodifiableMap(new LinkedHashMap<>(configs));
        }
        Map<String, PeftConfig> out = new LinkedHashMap<>(configs);
        out.putAll(tuner().peftConfig());
        return Collections.unmodifiableMap(out);
    }

    public String activeAdapter() {
        return activeAdapter;
    }

    /** The config of the active adapter (prompt learning: with the dimensions resolved from the model). */
    public PeftConfig activePeftConfig() {
        return peftConfig().get(activeAdapter);
    }

    /** Adds an inactive adapter; {@link #setAdapter} activates it. */
    public void addAdapter(String adapterName, PeftConfig config) {
        if (!promptLearning) {
            requireLoraGaEstimates(tuner().model(), config);
        }
        addAdapterUnchecked(adapterName, config);
    }

    @SuppressWarnings("unchecked")
    private void addAdapterUnchecked(String adapterName, PeftConfig config) {
        if (config.peftType() != configs.get(activeAdapter).peftType()) {
            throw new IllegalArgumentException("Cannot combine adapters with different peft types. Found "
                    + configs.get(activeAdapter).peftType() + " and " + config.peftType() + ".");
        }
        if (promptLearning) {
            PromptForward.checkTaskType(config);
            addPromptAdapter(adapterName, (PromptLearningConfig) config, null);
            return;
        }
        ((BaseTuner<PeftConfig>) tuner()).injectAdapter(adapterName, withTaskModulesToSave(config));
        configs.put(adapterName, tuner().peftConfig().get(adapterName));
    }

    /**
     * Combines LoRA adapters into a new inactive adapter {@code adapterName} (peft's {@code add_weighted_adapter} with
     * {@code "svd"}, {@code "linear"} or {@code "cat"}; see {@link LoraModel#addWeightedAdapter}); activate it with
     * {@link #setAdapter}.
     */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String adapterName,
                                   String combinationType) {
        addWeightedAdapter(adapters, weights, adapterName, combinationType, null, null);
    }

    /** peft's default combination, {@code "svd"} with the largest source rank. */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String adapterName) {
        addWeightedAdapter(adapters, weights, adapterName, "svd", null, null);
    }

    /**
     * Same, with peft's SVD options: {@code svdRank} (null: the largest source rank) and {@code svdClamp} (null: no
     * clamping; else the quantile of the new A/B values they are clamped to).
     */
    public void addWeightedAdapter(List<String> adapters, List<Double> weights, String adapterName,
                                   String combinationType, Integer svdRank, Double svdClamp) {
        if (!promptLearning && (Object) tuner() instanceof AdaLoraModel) {
            throw new UnsupportedOperationException("AdaLoraModel does not support add_weighted_adapter method; "
                    + "combine LoRA adapters instead");
        }
        if (promptLearning || !((Object) tuner() instanceof LoraModel lora)) {
            throw new UnsupportedOperationException("add_weighted_adapter needs LoRA adapters");
        }
        if (configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter with name " + adapterName + " already exists.");
        }
        lora.addWeightedAdapter(adapters, weights, adapterName, combinationType, svdRank, svdClamp);
        configs.put(adapterName, tuner().peftConfig().get(adapterName));
    }

    /** Activates one adapter (and makes it trainable unless it was loaded for inference). */
    public void setAdapter(String adapterName) {
        if (!configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter " + adapterName + " not found; available: " + configs.keySet());
        }
        if (promptLearning) {
            activeAdapter = adapterName;
            for (ModulesToSaveWrapper w : headWrappers().values()) {
                if (w.copyOf(adapterName) != null) {
                    w.setAdapter(adapterName, configs.get(adapterName).inferenceMode());
                }
            }
            return;
        }
        tuner().setAdapter(List.of(adapterName));
        activeAdapter = adapterName;
    }

    public void deleteAdapter(String adapterName) {
        if (promptLearning) {
            if (!configs.containsKey(adapterName)) {
                throw new IllegalArgumentException("Adapter " + adapterName + " does not exist");
            }
            configs.remove(adapterName);
            Module enc = promptEncoders().remove(adapterName);
            enc.namedParameters().values().forEach(p -> p.data().close());
            headWrappers().values().forEach(w -> w.deleteAdapter(adapterName));
            if (adapterName.equals(activeAdapter)) {
                List<String> remaining = new ArrayList<>(configs.keySet());
                Collections.sort(remaining);
                activeAdapter = null;
                if (!remaining.isEmpty()) {
                    setAdapter(remaining.get(0));
                }
            }
            return;
        }
        tuner().deleteAdapter(adapterName);
        configs.remove(adapterName);
        activeAdapter = tuner().activeAdapters().isEmpty() ? null : tuner().activeAdapters().get(0);
    }

    /** Loads another saved adapter under {@code adapterName} (inactive until {@link #setAdapter}). */
    public void loadAdapter(Path dir, String adapterName, boolean isTrainable) {
        PeftConfig read = PeftConfig.fromPretrained(dir);
        checkTrainablePrompt(read, isTrainable);
        PeftConfig config = withField(read, "inference_mode", !isTrainable);
        addAdapterUnchecked(adapterName, config);
        loadWeights(dir, adapterName);
    }

    private void loadWeights(Path dir, String adapterName) {
        Path file = AdapterIO.weightsFile(dir);
        if (!promptLearning) {
            tuner().prepareToLoad(adapterName);
        }
        try {
            // Prompt learning has no tuner prefix: every expected tensor must be in the file.
            AdapterIO.loadInto(file, adapterTensors(adapterName), promptLearning ? null : tuner().prefix());
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": " + e.getMessage(), e);
        }
    }

    /** The parameters an adapter file fills, under the keys peft saves. */
    private Map<String, Param> adapterTensors(String adapterName) {
        if (!promptLearning) {
            return tuner().adapterStateDict(adapterName, "base_model.");
        }
        Map<String, Param> out = new LinkedHashMap<>();
        // peft loads prompt_embeddings into embedding.weight (an inference encoder: the encoded prompts).
        out.put("prompt_embeddings", promptEncoder(adapterName).embedding().weight());
        out.putAll(headTensors(adapterName));
        return out;
    }

    // ---- prompt learning ---------------------------------------------------------------------------

    /**
     * peft's {@code add_adapter} for prompt learning: resolve the config against the model
     * ({@link PromptLearning#prepareConfig}), freeze the whole base model, build the encoder under
     * {@code prompt_encoder.<name>}, register {@code word_embeddings}, and for SEQ_CLS give the {@code classifier} /
     * {@code score} head a trainable copy for this adapter (peft's modules_to_save), saved with it.
     */
    private void addPromptAdapter(String adapterName, PromptLearningConfig config, PromptTokenizer tokenizer) {
        if (configs.containsKey(adapterName)) {
            throw new IllegalArgumentException("Adapter with name " + adapterName + " already exists.");
        }
        PreTrainedModel model = (PreTrainedModel) child("base_model");
        PromptLearningConfig prepared = PromptLearning.prepareConfig(config, model.config());
        if (!(model.inputEmbeddings() instanceof Embedding words)) {
            throw new IllegalArgumentException("prompt learning needs the model's input embeddings to be an "
                    + "Embedding; got " + model.inputEmbeddings().getClass().getSimpleName());
        }
        PromptLearning.checkFitsModel(prepared, model.config(), words);
        if (prepared.peftType() == io.peft4j.config.PeftType.PREFIX_TUNING && !model.supportsPastKeyValues()) {
            throw new IllegalArgumentException("Model does not support past key values which are required for prefix "
                    + "tuning (" + model.getClass().getSimpleName() + ")");
        }
        Module encoder = PromptLearning.createEncoder(model.manager(), prepared, words, tokenizer, null);
        encoder.requiresGrad(!prepared.inferenceMode());
        // peft freezes every base parameter; the active adapter's head copy trains again below.
        model.requiresGrad(false);
        promptEncoders().put(adapterName, encoder);
        if (!hasChild("word_embeddings")) {
            registerModule("word_embeddings", words);
        }
        configs.put(adapterName, prepared);
        List<String> toSave = new ArrayList<>();
        if (prepared.modulesToSave() != null) {
            toSave.addAll(prepared.modulesToSave());
        }
        if (prepared.taskType() == TaskType.SEQ_CLS) {
            toSave.addAll(List.of("classifier", "score"));
        }
        // peft's _set_trainable: SEQ_CLS adds classifier and score; newer configs may list modules_to_save.
        ModulesToSaveWrapper.wrapMatching(model, adapterName, toSave, new ArrayList<>());
        String active = activeAdapter == null ? adapterName : activeAdapter;
        for (ModulesToSaveWrapper w : headWrappers().values()) {
            if (w.copyOf(active) != null) {
                w.setAdapter(active, configs.get(active).inferenceMode());
            }
        }
    }

    /** Head wrappers of prompt learning by path relative to the base model. */
    private Map<String, ModulesToSaveWrapper> headWrappers() {
        Map<String, ModulesToSaveWrapper> out = new LinkedHashMap<>();
        child("base_model").namedModules().forEach((k, m) -> {
            if (m instanceof ModulesToSaveWrapper w) {
                out.put(k, w);
            }
        });
        return out;
    }

    /** An adapter's head copies under peft's saved keys ({@code base_model.classifier.weight}). */
    private Map<String, Param> headTensors(String adapterName) {
        Map<String, Param> out = new LinkedHashMap<>();
        headWrappers().forEach((path, w) -> {
            Module copy = w.copyOf(adapterName);
            if (copy != null) {
                copy.namedStateEntries().forEach((k, p) -> out.put("base_model." + path + "." + k, p));
            }
        });
        return out;
    }

    private ModuleDict promptEncoders() {
        return (ModuleDict) child("prompt_encoder");
    }

    /** The prompt encoder of an adapter ({@code prompt_encoder.<name>}). */
    public PromptLearningEncoder promptEncoder(String adapterName) {
        if (!promptLearning) {
            throw new IllegalStateException("not a prompt-learning model");
        }
        Module m = promptEncoders().get(adapterName);
        if (m == null) {
            throw new IllegalArgumentException("Adapter " + adapterName + " not found; available: " + configs.keySet());
        }
        return (PromptLearningEncoder) m;
    }

    /** The model's input embedding ({@code word_embeddings}), prompt learning only. */
    Embedding wordEmbeddings() {
        return (Embedding) child("word_embeddings");
    }

    /**
     * peft's {@code get_prompt_embedding_to_save}: the encoder's output for the adapter's virtual tokens,
     * {@code [num_virtual_tokens * submodules, token_dim]} (prefix tuning: {@code [num_virtual_tokens, num_layers *
     * 2 * token_dim]}), a new array the caller closes.
     */
    public NDArray promptEmbeddingToSave(String adapterName) {
        PromptLearningEncoder enc = promptEncoder(adapterName);
        try (NoGrad ng = NoGrad.enter()) {
            NDArray w = enc.embedding().weight().data();
            if (enc.inferenceOnly()) {
                return w.duplicate();
            }
            NDArray ids = w.getManager().arange(0, (int) enc.numTokens()).toType(ai.djl.ndarray.types.DataType.INT64, false);
            NDArray out = enc.encode(ids);
            ids.close();
            return out;
        }
    }

    /**
     * Runs with adapters disabled until the returned scope is closed:
     * {@code try (var off = peft.disableAdapter()) { ... }}.
     */
    public AdapterScope disableAdapter() {
        if (promptLearning) {
            // peft swaps in the base model's forward: no virtual tokens (a SEQ_CLS head copy stays in use).
            promptDisabled = true;
            return () -> promptDisabled = false;
        }
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
        if (promptLearning) {
            throw new UnsupportedOperationException("prompt learning runs through forward(ModelInput)");
        }
        return baseModel().forward(input);
    }

    /** Forward of a transformers-style model. */
    public ModelOutput forward(ModelInput input) {
        Module m = baseModel();
        if (!(m instanceof PreTrainedModel p)) {
            throw new UnsupportedOperationException(m.getClass().getSimpleName() + " takes a single tensor; call "
                    + "forward(NDArray)");
        }
        if (promptLearning) {
            return promptDisabled ? p.forward(input) : PromptForward.forward(this, input);
        }
        return tuner().afterForward(p.forward(input));
    }

    /**
     * Generates text ids with the adapters as they are now: active, merged ({@link #mergeAdapter()}), or off
     * inside {@link #disableAdapter()}, as HF's {@code peft_model.generate(...)}. See {@link Generation}. With
     * prompt learning the virtual tokens (or the prefix) enter at the first step and then live in the key/value
     * cache, as in peft's {@code prepare_inputs_for_generation}.
     */
    public GenerationResult generate(List<long[]> prompts, GenerationConfig config) {
        if (promptLearning) {
            // peft drops the position ids generate() derives from the mask; the model numbers positions itself.
            return Generation.generate(in -> forward(in.toBuilder().positionIds(null).build()), prompts, config);
        }
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
        if (promptLearning) {
            throw new UnsupportedOperationException("adapter_names (mixed batches) is supported for LoRA adapters only");
        }
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
            // a 4-bit weight packs two values per UINT8 element: counted twice, as peft counts Params4bit
            long n = p.data().getDataType() == ai.djl.ndarray.types.DataType.UINT8 ? 2 * p.numel() : p.numel();
            total += n;
            if (p.requiresGrad()) {
                trainable += n;
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

    /**
     * AdaLoRA's rank budget step (peft's {@code model.base_model.update_and_allocate(global_step)}): call once per
     * training step after the optimizer update and before the gradients are cleared, e.g.
     * {@code TrainStep.run(loss, opt, params, () -> peft.updateAndAllocate(step))}.
     */
    public void updateAndAllocate(int globalStep) {
        if (promptLearning || !((Object) tuner() instanceof AdaLoraModel adalora)) {
            throw new UnsupportedOperationException("updateAndAllocate is AdaLoRA's rank allocation; this model's "
                    + "adapter is " + configs.get(activeAdapter).peftType());
        }
        adalora.updateAndAllocate(globalStep);
    }

    /**
     * What a {@link io.peft4j.nn.train.Trainer} must run each step for this model: AdaLoRA's
     * {@link #updateAndAllocate} after the optimizer update (with peft's 0-based step); nothing for other methods.
     */
    @Override
    public List<io.peft4j.nn.train.TrainerCallback> trainerCallbacks() {
        if (promptLearning || !((Object) tuner() instanceof AdaLoraModel)) {
            return List.of();
        }
        return List.of(new io.peft4j.nn.train.TrainerCallback() {
            @Override
            public void onOptimizerStep(io.peft4j.nn.train.TrainerState s, java.util.Collection<Param> params) {
                updateAndAllocate((int) s.globalStep() - 1);
            }
        });
    }

    private void requireInjectable(String what) {
        if (promptLearning) {
            throw new UnsupportedOperationException(what + " is not supported for prompt-learning methods ("
                    + configs.get(activeAdapter).peftType() + "): they add virtual tokens, not weights");
        }
    }

    // ---- merge -------------------------------------------------------------------------------------

    /** Merges the active adapters into the base weights, reversibly. */
    public void mergeAdapter() {
        requireInjectable("merging");
        tuner().mergeAdapter(null, false);
    }

    public void mergeAdapter(List<String> adapterNames, boolean safeMerge) {
        requireInjectable("merging");
        tuner().mergeAdapter(adapterNames, safeMerge);
    }

    public void unmergeAdapter() {
        requireInjectable("merging");
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
        requireInjectable("merging");
        if (io.peft4j.nn.quant.Quantization.isQuantized(this)) {
            LOG.warn("Merging LoRA into 4-bit base weights is lossy (dequantise, add, re-quantise): the merged model "
                    + "may generate differently. mergeAndUnloadFullPrecision() merges into float32 weights instead.");
        }
        Module m = tuner().mergeAndUnload(true, safeMerge, adapterNames);
        configs.clear();
        return m;
    }

    /**
     * QLoRA's exact merge: replaces every 4-bit base layer by a float32 Linear holding its dequantised weight, then
     * merges the active adapters in float32 and returns the plain full-precision model (transformers'
     * {@code model.dequantize()} followed by {@code merge_and_unload()}). Unlike {@link #mergeAndUnload()} on a
     * 4-bit model, nothing is re-quantised, so the merged model computes exactly what the adapter model computed.
     */
    public Module mergeAndUnloadFullPrecision() {
        requireInjectable("merging");
        io.peft4j.nn.quant.Quantization.dequantize(this);
        Module m = mergeAndUnload();
        if (m instanceof io.peft4j.nn.model.PreTrainedModel p && p.config().has("quantization_config")) {
            com.fasterxml.jackson.databind.node.ObjectNode json = p.config().json();
            json.remove("quantization_config");
            p.setConfig(new io.peft4j.nn.model.ModelConfig(json, p.config().source()));
        }
        return m;
    }

    /** Removes the adapters without merging and returns the original base model. */
    public Module unload() {
        requireInjectable("unloading");
        Module m = tuner().mergeAndUnload(false, false, null);
        configs.clear();
        return m;
    }

    // ---- save --------------------------------------------------------------------------------------

    /** Saves every adapter in the HF layout ({@code default} at the top, others in sub-directories). */
    public void saveAdapter(Path dir) {
        saveAdapter(dir, SaveOptions.DEFAULT);
    }

    /** Same as {@link #saveAdapter(Path)}, HF's name. */
    public void savePretrained(Path dir) {
        saveAdapter(dir, SaveOptions.DEFAULT);
    }

    /** Same as {@link #saveAdapter(Path, SaveOptions)}, HF's name. */
    public void savePretrained(Path dir, SaveOptions options) {
        saveAdapter(dir, options);
    }

    /**
     * Saves the selected adapters (all when null) atomically: a failure leaves an earlier save intact.
     */
    public void saveAdapter(Path dir, List<String> selectedAdapters) {
        saveAdapter(dir, SaveOptions.builder().selectedAdapters(selectedAdapters).build());
    }

    /**
     * Saves as peft's {@code save_pretrained} with these options, atomically: a failure (including a refused
     * conversion) leaves an earlier save intact. With
     * {@link SaveOptions.Builder#pathInitialModelForWeightConversion} each adapter is written as a plain LoRA
     * adapter for the original base weights (see {@link SaveOptions}).
     */
    public void saveAdapter(Path dir, SaveOptions options) {
        List<String> names = options.selectedAdapters() == null ? new ArrayList<>(configs.keySet())
                : options.selectedAdapters();
        Path initial = options.pathInitialModelForWeightConversion();
        if (initial != null) {
            requireInjectable("path_initial_model_for_weight_conversion");
        }
        List<AdapterIO.Entry> entries = new ArrayList<>();
        List<NDArray> computed = new ArrayList<>();
        try (ai.djl.ndarray.NDManager scratch = io.peft4j.nn.Torch.newManager()) {
            for (String name : names) {
                AdapterIO.Entry entry = saveEntry(name, computed);
                entries.add(initial == null ? entry
                        : WeightConversion.convert(entry.subdir(), entry.config(), entry.tensors(), initial, scratch));
            }
            AdapterIO.writeAtomically(dir, entries);
        } catch (IOException e) {
            throw new UncheckedIOException("failed to save adapter to " + dir + ": " + e.getMessage(), e);
        } finally {
            computed.forEach(NDArray::close);
        }
    }

    /** One adapter's config and tensors under peft's saved keys; arrays computed for it go to {@code computed}. */
    private AdapterIO.Entry saveEntry(String name, List<NDArray> computed) {
        PeftConfig config = peftConfig().get(name);
        if (config == null) {
            throw new IllegalArgumentException("Adapter " + name + " not found; available: " + configs.keySet());
        }
        if (config.baseModelNameOrPath() == null && baseModel() instanceof PreTrainedModel p
                && p.nameOrPath() != null) {
            config = withField(config, "base_model_name_or_path", p.nameOrPath());
        }
        Map<String, Param> tensors;
        if (promptLearning) {
            NDArray prompt = promptEmbeddingToSave(name);
            computed.add(prompt);
            tensors = new LinkedHashMap<>();
            tensors.put("prompt_embeddings", new Param(prompt, false));
            tensors.putAll(headTensors(name));
        } else {
            config = tuner().configToSave(name, config);
            tensors = tuner().tensorsToSave(name, "base_model.", computed);
        }
        return new AdapterIO.Entry(DEFAULT_ADAPTER.equals(name) ? "" : name, config, tensors);
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
