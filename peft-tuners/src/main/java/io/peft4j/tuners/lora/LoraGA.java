package io.peft4j.tuners.lora;

import ai.djl.engine.EngineException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.training.GradientCollector;
import io.peft4j.config.LoraConfig;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.TargetMatcher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.function.IntFunction;

/**
 * LoRA-GA (Wang et al. 2024, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation"), peft's
 * {@code init_lora_weights="lora_ga"}: A and B start from the SVD of the full weight's gradient estimated on a few
 * batches, so the first LoRA step approximates the first full fine-tuning step; {@code s·B·A} is subtracted from
 * the base weight so the output is unchanged at init.
 *
 * <pre>{@code
 * LoraConfig cfg = LoraConfig.builder().r(8).loraAlpha(16).targetModules("q_proj", "v_proj")
 *         .initLoraWeights("lora_ga").loraGaConfig(new LoraGAConfig()).build();
 * LoraGA.preprocess(model, cfg, batches);              // peft's preprocess_loraga
 * PeftModel peft = PeftModel.getPeftModel(model, cfg);  // consumes the estimates
 * }</pre>
 *
 * <p>With {@code direction="ArB2r"} and SVD {@code G = U S Vᵀ}: {@code A = c·Vᵀ[0:r]}, {@code B = c·U[:, r:2r]};
 * a first SGD step then changes the effective weight by {@code −lr·s²·c²·G₂ᵣ} (the best rank-2r approximation
 * of {@code −lr·G}, up to the factor). See {@link io.peft4j.config.LoraGAConfig} for the directions and scales.
 *
 * <p><b>Memory.</b> peft makes every target weight require grad and runs the train step once, so it holds one full
 * gradient per target at the same time (for all linear layers of a model: as much memory as the model again).
 * Here only {@code layersPerPass} target weights require grad in each pass over the batches (1 by default); at the
 * end of its pass each gradient is averaged, decomposed and dropped, and only its {@code 2r} leading singular
 * vectors ({@code (out + in)·2r} floats) are kept until {@code getPeftModel}. The price is
 * {@code ceil(targets / layersPerPass)} passes over the batches instead of one: each a forward and a backward per
 * batch (the backward still runs through the network, but computes weight gradients only for that pass's layers).
 * The SVD is exact (EJML, double precision), where peft uses a randomised {@code svd_lowrank}.
 */
public final class LoraGA {
    private static final Logger LOG = LoggerFactory.getLogger(LoraGA.class);

    /** The leading singular vectors of one weight's gradient: {@code u (out, k)}, {@code vt (k, in)}, row-major. */
    record Estimate(float[] u, float[] vt, int k) {}

    /** Per base Linear/Conv1D (by identity), as peft attaches {@code _peft_loraga_grad} to the module. */
    private static final Map<Module, Estimate> ESTIMATES = Collections.synchronizedMap(new WeakHashMap<>());

    private LoraGA() {}

    /**
     * Estimates the gradients from {@code batches} (each with {@code labels}; the loss is the model's own),
     * one target layer per pass.
     */
    public static void preprocess(PreTrainedModel model, LoraConfig config, List<ModelInput> batches) {
        preprocess(model, config, batches, 1);
    }

    /** As {@link #preprocess(PreTrainedModel, LoraConfig, List)}, {@code layersPerPass} target layers per pass. */
    public static void preprocess(PreTrainedModel model, LoraConfig config, List<ModelInput> batches,
                                  int layersPerPass) {
        preprocess(model, config, batches.size(), i -> {
            ModelOutput out = model.forward(batches.get(i));
            if (out.loss() == null) {
                throw new IllegalArgumentException("LoRA-GA: batch " + i + " gives no loss; give each batch labels");
            }
            return out.loss();
        }, layersPerPass);
    }

    /**
     * peft's {@code preprocess_loraga} for any module: estimates, for every Linear / Conv1D that {@code config}
     * targets, the average gradient of {@code batchLoss} over {@code numBatches} batches, and keeps its leading
     * singular vectors for {@code getPeftModel}.
     *
     * @param batchLoss the scalar loss of batch {@code i}; called {@code ceil(targets / layersPerPass)} times per
     *                  batch, with autograd recording, inside a scope that frees its intermediates
     * @param layersPerPass how many target weights require grad in one pass over the batches (memory against
     *                      passes; see the class comment)
     */
    public static void preprocess(Module model, LoraConfig config, int numBatches, IntFunction<NDArray> batchLoss,
                                  int layersPerPass) {
        if (config.loraGa() == null) {
            throw new IllegalArgumentException("If you want to use LoRA-GA, please set lora_ga_config: "
                    + "LoraConfig.builder().initLoraWeights(\"lora_ga\").loraGaConfig(new LoraGAConfig()), or "
                    + "\"lora_ga_config\": {} in adapter_config.json");
        }
        if (!"lora_ga".equals(config.initLoraWeights().name())) {
            throw new IllegalArgumentException("LoRA-GA preprocessing needs init_lora_weights=\"lora_ga\", got "
                    + config.initLoraWeights());
        }
        if (numBatches <= 0 || layersPerPass <= 0) {
            throw new IllegalArgumentException("numBatches and layersPerPass must be > 0, got " + numBatches
                    + " and " + layersPerPass);
        }
        LoraConfig prepared = LoraModel.prepare(config, model);
        LinkedHashMap<String, Module> targets = LoraModel.linearTargets(model, prepared);
        if (targets.isEmpty()) {
            throw new IllegalArgumentException("LoRA-GA: no Linear or Conv1D module matches target_modules "
                    + prepared.targetModules());
        }
        Map<Param, Boolean> flags = new IdentityHashMap<>();
        model.namedParameters().values().forEach(p -> flags.put(p, p.requiresGrad()));
        boolean training = model.isTraining();
        model.requiresGrad(false);
        model.train(true); // as peft
        List<Param> pending = new ArrayList<>();
        try {
            List<String> keys = new ArrayList<>(targets.keySet());
            for (int from = 0; from < keys.size(); from += layersPerPass) {
                List<String> group = keys.subList(from, Math.min(keys.size(), from + layersPerPass));
                for (String key : group) {
                    Param w = weight(targets.get(key));
                    dropGradient(w); // a stale gradient would be summed in
                    w.requiresGrad(true);
                    pending.add(w);
                }
                accumulate(numBatches, batchLoss, group);
                for (String key : group) {
                    Module base = targets.get(key);
                    int r = TargetMatcher.patternValue(prepared.rankPattern(), key, prepared.r());
                    ESTIMATES.put(base, estimate(key, base, numBatches, r));
                }
                pending.forEach(LoraGA::dropGradient);
                pending.clear();
            }
        } finally {
            pending.forEach(LoraGA::dropGradient);
            flags.forEach(Param::requiresGrad);
            model.train(training);
        }
    }

    private static void accumulate(int numBatches, IntFunction<NDArray> batchLoss, List<String> group) {
        for (int i = 0; i < numBatches; i++) {
            try (NDScope scope = new NDScope();
                 GradientCollector gc = Torch.engine().newGradientCollector()) {
                scope.suppressNotUsedWarning();
                NDArray loss = batchLoss.apply(i);
                try {
                    gc.backward(loss);
                } catch (EngineException e) {
                    throw new IllegalStateException("LoRA-GA: cannot back-propagate batch " + i + " to " + group
                            + " (does the loss depend on them?): " + e.getMessage(), e);
                }
            }
        }
    }

    /** The averaged gradient as {@code (out, in)}, decomposed; only its {@code 2r} leading components are kept. */
    private static Estimate estimate(String key, Module base, int numBatches, int r) {
        Param w = weight(base);
        float[] g;
        try (NoGrad ng = NoGrad.enter(); NDArray grad = w.data().getGradient()) {
            g = grad.toFloatArray();
        }
        long[] shape = w.shape().getShape();
        boolean transposed = base instanceof Conv1D;
        int out = (int) (transposed ? shape[1] : shape[0]);
        int in = (int) (transposed ? shape[0] : shape[1]);
        float[] outIn = new float[g.length];
        boolean any = false;
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < in; i++) {
                float v = (transposed ? g[i * out + o] : g[o * in + i]) / numBatches;
                outIn[o * in + i] = v;
                any |= v != 0f;
            }
        }
        if (!any) {
            throw new IllegalStateException("LoRA-GA: " + key + ".weight received no gradient from the loss");
        }
        for (float v : outIn) {
            if (!Float.isFinite(v)) {
                throw new IllegalStateException("LoRA-GA: the gradient of " + key + ".weight is not finite");
            }
        }
        LoraInit.Svd svd = LoraInit.svd(outIn, out, in, true, "LoRA-GA: SVD of the gradient of " + key);
        int k = Math.min(2 * r, svd.s().length);
        float[] u = new float[out * k];
        float[] vt = new float[k * in];
        for (int j = 0; j < k; j++) {
            for (int o = 0; o < out; o++) {
                u[o * k + j] = (float) svd.u().get(o, j);
            }
            for (int i = 0; i < in; i++) {
                vt[j * in + i] = (float) svd.vt().get(j, i);
            }
        }
        return new Estimate(u, vt, k);
    }

    /**
     * Frees the gradient buffer libtorch keeps on a weight: a copy takes the weight's place. (A detached view
     * would share storage that DJL may own through the old array, which is freed when that array closes.)
     */
    private static void dropGradient(Param w) {
        w.requiresGrad(false);
        try (NoGrad ng = NoGrad.enter()) {
            w.setData(w.data().duplicate());
        }
    }

    private static Param weight(Module base) {
        return base.param("weight");
    }

    /** Whether {@link #preprocess} left estimates for every module {@code config} targets in {@code model}. */
    public static boolean isPreprocessed(Module model, LoraConfig config) {
        return missing(model, config).isEmpty();
    }

    private static List<String> missing(Module model, LoraConfig config) {
        List<String> out = new ArrayList<>();
        LoraModel.linearTargets(model, LoraModel.prepare(config, model)).forEach((key, base) -> {
            if (!ESTIMATES.containsKey(base)) {
                out.add(key);
            }
        });
        return out;
    }

    /**
     * The check {@code getPeftModel} runs for a new {@code lora_ga} adapter: {@code lora_ga_config} is set and
     * {@link #preprocess} ran for this model and config. (Loading a saved adapter needs neither: its weights are
     * read from the file, as in peft.)
     */
    public static void requirePreprocessed(Module model, LoraConfig config) {
        if (config.loraGa() == null) {
            throw new IllegalArgumentException("lora_ga_config must be provided when init_lora_weights='lora_ga'. "
                    + "Please pass loraGaConfig(new LoraGAConfig(...)) to the LoraConfig builder.");
        }
        List<String> missing = missing(model, config);
        if (missing.isEmpty()) {
            return;
        }
        int all = LoraModel.linearTargets(model, LoraModel.prepare(config, model)).size();
        throw new IllegalStateException(missing.size() == all
                ? "init_lora_weights=\"lora_ga\" needs gradient estimates: call LoraGA.preprocess(model, config, "
                        + "batches) before PeftModel.getPeftModel (peft: preprocess_loraga before get_peft_model)"
                : "LoRA-GA: no gradient estimate for " + missing + "; call LoraGA.preprocess with the same model "
                        + "and config as PeftModel.getPeftModel");
    }

    /**
     * Re-initialises {@code adapter} of {@code layer} from the estimate preprocessing left for its base layer, and
     * forgets the estimate. Without one (an adapter being loaded from a file) the default init stays, as in peft.
     */
    static void initialize(LoraLinear layer, String adapter, LoraConfig config, String key) {
        Estimate e = ESTIMATES.remove(layer.baseLayer());
        if (e == null) {
            LOG.debug("LoRA-GA: no gradient estimate for {}; default init (expected when loading a saved adapter)", key);
            return;
        }
        if (config.loraGa() == null) {
            throw new IllegalArgumentException("lora_ga_config must be provided when init_lora_weights='lora_ga'. "
                    + "Please pass loraGaConfig(new LoraGAConfig(...)) to the LoraConfig builder.");
        }
        layer.loraGaInit(adapter, config.loraGa(), e.u(), e.vt(), e.k());
    }
}
