package io.peft4j.hub;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.AtomicDirectory;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.quant.BnbFormat;
import io.peft4j.nn.quant.Linear4bit;
import io.peft4j.transformers.Checkpoints;
import io.peft4j.config.TaskType;
import io.peft4j.transformers.bert.BertConfig;
import io.peft4j.transformers.bert.BertForSequenceClassification;
import io.peft4j.transformers.bert.BertModel;
import io.peft4j.transformers.distilbert.DistilBertConfig;
import io.peft4j.transformers.distilbert.DistilBertForSequenceClassification;
import io.peft4j.transformers.distilbert.DistilBertModel;
import io.peft4j.transformers.gpt2.Gpt2ForSequenceClassification;
import io.peft4j.transformers.gpt2.Gpt2LMHeadModel;
import io.peft4j.transformers.llama.LlamaConfig;
import io.peft4j.transformers.llama.LlamaForCausalLM;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Loads and saves Hugging Face model directories ({@code config.json} + {@code model.safetensors} or a
 * sharded index). The one place that maps {@code model_type} to a model class. Local files only.
 */
public final class HfModels {
    /** Merged models larger than this are written as shards, like transformers' default. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 5L * 1024 * 1024 * 1024;

    /** Loads one architecture from a directory. */
    @FunctionalInterface
    private interface Loader {
        PreTrainedModel load(Path dir) throws IOException;
    }

    /** One supported {@code model_type}: its classes by head, by transformers' architecture name. */
    private record Family(Loader causalLm, Loader seqCls, Loader base, Map<String, Loader> byArchitecture) {}

    private static final Map<String, Family> FAMILIES = new TreeMap<>();

    static {
        Family llama = new Family(LlamaForCausalLM::fromPretrained, null, null,
                Map.of("LlamaForCausalLM", LlamaForCausalLM::fromPretrained,
                        "MistralForCausalLM", LlamaForCausalLM::fromPretrained,
                        "Qwen2ForCausalLM", LlamaForCausalLM::fromPretrained));
        for (String t : LlamaConfig.MODEL_TYPES) {
            FAMILIES.put(t, llama);
        }
        FAMILIES.put("gpt2", new Family(Gpt2LMHeadModel::fromPretrained, Gpt2ForSequenceClassification::fromPretrained,
                null, Map.of("GPT2LMHeadModel", Gpt2LMHeadModel::fromPretrained,
                        "GPT2ForSequenceClassification", Gpt2ForSequenceClassification::fromPretrained)));
        FAMILIES.put(BertConfig.MODEL_TYPE, new Family(null, BertForSequenceClassification::fromPretrained,
                BertModel::fromPretrained, Map.of("BertModel", BertModel::fromPretrained,
                        "BertForSequenceClassification", BertForSequenceClassification::fromPretrained)));
        FAMILIES.put(DistilBertConfig.MODEL_TYPE, new Family(null, DistilBertForSequenceClassification::fromPretrained,
                DistilBertModel::fromPretrained, Map.of("DistilBertModel", DistilBertModel::fromPretrained,
                        "DistilBertForSequenceClassification", DistilBertForSequenceClassification::fromPretrained)));
    }

    private HfModels() {}

    /** The {@code model_type}s peft4j can load. */
    public static List<String> supportedModelTypes() {
        return List.copyOf(FAMILIES.keySet());
    }

    /**
     * Loads a model from a directory, or from the local Hugging Face cache by repo id
     * ({@code models--ORG--NAME/snapshots/REV/}); the class is the one named in {@code architectures}.
     */
    public static PreTrainedModel fromPretrained(String dirOrRepoId) throws IOException {
        return fromPretrained(dirOrRepoId, null);
    }

    /**
     * Loads a model with the head a task needs, like transformers' {@code AutoModelFor...}: {@code CAUSAL_LM} and
     * {@code SEQ_CLS} pick that head whatever {@code architectures} says (a missing head's weights are
     * initialised, with a warning); null follows {@code architectures}.
     */
    public static PreTrainedModel fromPretrained(String dirOrRepoId, TaskType task) throws IOException {
        Path dir = resolve(dirOrRepoId);
        Path configFile = dir.resolve("config.json");
        ModelConfig config = ModelConfig.read(configFile);
        String type = config.modelType();
        Family family = type == null ? null : FAMILIES.get(type);
        if (family == null) {
            throw new IllegalArgumentException(configFile + ": model_type " + (type == null ? "is missing"
                    : "'" + type + "' is not supported") + " (supported: " + String.join(", ", FAMILIES.keySet()) + ")");
        }
        Loader loader = null;
        if (task == TaskType.CAUSAL_LM) {
            loader = family.causalLm();
        } else if (task == TaskType.SEQ_CLS) {
            loader = family.seqCls();
        } else if (task == null) {
            String arch = config.architectures().isEmpty() ? null : config.architectures().get(0);
            loader = arch == null ? null : family.byArchitecture().get(arch);
            if (loader == null) {
                // Unknown head (e.g. BertForMaskedLM): the causal LM, else the bare encoder.
                loader = family.causalLm() != null ? family.causalLm() : family.base();
            }
        }
        if (loader == null) {
            throw new IllegalArgumentException(configFile + ": model_type '" + type + "' has no " + task
                    + " model in peft4j yet");
        }
        PreTrainedModel model = loader.load(dir);
        model.setNameOrPath(dirOrRepoId);
        return model;
    }

    public static PreTrainedModel fromPretrained(Path dir) throws IOException {
        return fromPretrained(dir.toString());
    }

    /**
     * Loads a model in 4 bits (transformers' {@code load_in_4bit=True}, QLoRA): every Linear that {@code quant} does
     * not skip becomes a {@link Linear4bit}, each weight quantised as it is read, and no float32 copy of those weights
     * is kept. Embeddings, norms and (by default) {@code lm_head} / {@code score} / {@code classifier} stay float32.
     * A directory saved with bitsandbytes 4-bit weights loads its packed weights as they are.
     */
    public static PreTrainedModel fromPretrained(String dirOrRepoId, TaskType task, BitsAndBytesConfig quant)
            throws IOException {
        return Checkpoints.loadingIn4bit(quant, () -> fromPretrained(dirOrRepoId, task));
    }

    /** {@link #fromPretrained(String, TaskType, BitsAndBytesConfig)} with the QLoRA recipe (NF4, double quant). */
    public static PreTrainedModel loadIn4bit(String dirOrRepoId) throws IOException {
        return fromPretrained(dirOrRepoId, null, BitsAndBytesConfig.nf4());
    }

    /** A local directory, or the snapshot of a repo id in the HF cache; fails listing where it looked. */
    public static Path resolve(String dirOrRepoId) throws IOException {
        return resolve(dirOrRepoId, "config.json", "Hugging Face model");
    }

    /** Like {@link #resolve(String)} for a peft adapter ({@code adapter_config.json}). */
    public static Path resolveAdapter(String dirOrRepoId) throws IOException {
        return resolve(dirOrRepoId, "adapter_config.json", "peft adapter");
    }

    /** Like {@link #resolve(String)} for a tokenizer ({@code tokenizer.json}). */
    public static Path resolveTokenizer(String dirOrRepoId) throws IOException {
        return resolve(dirOrRepoId, "tokenizer.json", "tokenizer");
    }

    private static Path resolve(String dirOrRepoId, String marker, String what) throws IOException {
        Path direct = Paths.get(dirOrRepoId);
        if (Files.isDirectory(direct)) {
            if (!Files.isRegularFile(direct.resolve(marker))) {
                throw new IOException(direct + ": not a " + what + " directory (no " + marker + ")");
            }
            return direct;
        }
        // "org/name" or a bare name such as "gpt2" (cached as models--gpt2).
        if (dirOrRepoId.matches("[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?") && !dirOrRepoId.startsWith(".")) {
            Path cache = hubCache();
            Path repo = cache.resolve("models--" + dirOrRepoId.replace("/", "--"));
            Path snapshot = snapshotIn(cache, dirOrRepoId);
            if (snapshot != null) {
                if (!Files.isRegularFile(snapshot.resolve(marker))) {
                    throw new IOException(snapshot + ": cached snapshot of '" + dirOrRepoId + "' has no " + marker);
                }
                return snapshot;
            }
            throw new IOException("'" + dirOrRepoId + "' is neither a directory nor a repo in the local Hugging Face"
                    + " cache (looked in " + direct.toAbsolutePath() + " and " + repo + "; the cache is $HF_HUB_CACHE, "
                    + "else $HF_HOME/hub, else ~/.cache/huggingface/hub); peft4j never downloads: fetch it with "
                    + "`huggingface-cli download " + dirOrRepoId + "` first");
        }
        throw new IOException(dirOrRepoId + ": no such directory");
    }

    static Path hubCache() {
        return hubCache(System.getenv(), System.getProperty("user.home"));
    }

    /** huggingface_hub's rule: {@code $HF_HUB_CACHE}, else {@code $HF_HOME/hub}, else {@code ~/.cache/huggingface/hub}. */
    static Path hubCache(Map<String, String> env, String userHome) {
        String hubCache = env.get("HF_HUB_CACHE");
        if (hubCache != null && !hubCache.isBlank()) {
            return Paths.get(hubCache);
        }
        String home = env.get("HF_HOME");
        if (home != null && !home.isBlank()) {
            return Paths.get(home, "hub");
        }
        return Paths.get(userHome, ".cache", "huggingface", "hub");
    }

    /** The snapshot directory of {@code repoId} in a hub cache directory ({@code refs/main} first), or null. */
    public static Path snapshotIn(Path cache, String repoId) throws IOException {
        return snapshotOf(cache.resolve("models--" + repoId.replace("/", "--")));
    }

    private static Path snapshotOf(Path repo) throws IOException {
        Path ref = repo.resolve("refs").resolve("main");
        if (Files.isRegularFile(ref)) {
            Path snap = repo.resolve("snapshots").resolve(Files.readString(ref, StandardCharsets.UTF_8).trim());
            if (Files.isDirectory(snap)) {
                return snap;
            }
        }
        Path snapshots = repo.resolve("snapshots");
        if (Files.isDirectory(snapshots)) {
            try (var s = Files.list(snapshots)) {
                return s.filter(Files::isDirectory).findFirst().orElse(null);
            }
        }
        return null;
    }

    /**
     * Writes {@code config.json} and the weights (sharded above {@code maxShardBytes}) as a directory that
     * transformers' {@code from_pretrained} loads. Atomic: written beside {@code dir}, then moved into place.
     */
    public static void savePretrained(PreTrainedModel model, Path dir, long maxShardBytes) throws IOException {
        AtomicDirectory.write(dir, false, tmp -> {
            Map<String, TensorData> tensors = new LinkedHashMap<>();
            Map<String, Linear4bit> quantized = new LinkedHashMap<>();
            model.namedModules().forEach((path, m) -> {
                if (m instanceof Linear4bit q) {
                    quantized.put(path.isEmpty() ? "weight" : path + ".weight", q);
                }
            });
            for (Map.Entry<String, NDArray> e : model.stateDict().entrySet()) {
                Linear4bit q = quantized.get(e.getKey());
                if (q != null) {
                    tensors.putAll(BnbFormat.toTensors(e.getKey(), q.toPacked())); // bitsandbytes' layout
                } else {
                    tensors.put(e.getKey(), TensorData.ofNDArray(e.getValue()));
                }
            }
            ShardedSafetensors.writeSharded(tmp, tensors, Map.of("format", "pt"), maxShardBytes);
            ModelConfig config = model.config();
            if (quantized.isEmpty() && config.has("quantization_config")) {
                // dequantised (e.g. for a full-precision merge): no longer a bitsandbytes checkpoint
                com.fasterxml.jackson.databind.node.ObjectNode json = config.json();
                json.remove("quantization_config");
                config = new ModelConfig(json, config.source());
            } else if (!quantized.isEmpty() && !config.has("quantization_config")) {
                Linear4bit q = quantized.values().iterator().next();
                config = config.with("quantization_config",
                        new BitsAndBytesConfig(q.quantType(), q.doubleQuant(), q.blocksize(), null).toJson());
            }
            Files.writeString(tmp.resolve("config.json"), config.toJsonString() + "\n", StandardCharsets.UTF_8);
        });
    }

    public static void savePretrained(PreTrainedModel model, Path dir) throws IOException {
        savePretrained(model, dir, DEFAULT_MAX_SHARD_BYTES);
    }

}
