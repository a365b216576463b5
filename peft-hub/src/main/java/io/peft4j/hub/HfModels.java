package io.peft4j.hub;

import ai.djl.ndarray.NDArray;
import io.peft4j.nn.AtomicDirectory;
import io.peft4j.nn.model.ModelConfig;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.transformers.llama.LlamaForCausalLM;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Loads and saves Hugging Face model directories ({@code config.json} + {@code model.safetensors} or a
 * sharded index). The one place that maps {@code model_type} to a model class. Local files only.
 */
public final class HfModels {
    /** model types served by the LLaMA-family implementation. */
    private static final List<String> LLAMA_FAMILY = List.of("llama", "mistral", "qwen2");
    /** Merged models larger than this are written as shards, like transformers' default. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 5L * 1024 * 1024 * 1024;

    private HfModels() {}

    /**
     * Loads a model from a directory, or from the local Hugging Face cache by repo id
     * ({@code models--ORG--NAME/snapshots/REV/}).
     */
    public static PreTrainedModel fromPretrained(String dirOrRepoId) throws IOException {
        Path dir = resolve(dirOrRepoId);
        ModelConfig config = ModelConfig.read(dir.resolve("config.json"));
        String type = config.modelType();
        PreTrainedModel model;
        if (type != null && LLAMA_FAMILY.contains(type)) {
            model = LlamaForCausalLM.fromPretrained(dir);
        } else {
            throw new IllegalArgumentException(dir.resolve("config.json") + ": model_type '" + type
                    + "' is not supported yet (supported: " + LLAMA_FAMILY + ")");
        }
        model.setNameOrPath(dirOrRepoId);
        return model;
    }

    public static PreTrainedModel fromPretrained(Path dir) throws IOException {
        return fromPretrained(dir.toString());
    }

    /** A local directory, or the snapshot of a repo id in the HF cache; fails listing where it looked. */
    public static Path resolve(String dirOrRepoId) throws IOException {
        return resolve(dirOrRepoId, "config.json", "Hugging Face model");
    }

    /** Like {@link #resolve(String)} for a peft adapter ({@code adapter_config.json}). */
    public static Path resolveAdapter(String dirOrRepoId) throws IOException {
        return resolve(dirOrRepoId, "adapter_config.json", "peft adapter");
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
            for (Map.Entry<String, NDArray> e : model.stateDict().entrySet()) {
                tensors.put(e.getKey(), TensorData.ofNDArray(e.getValue()));
            }
            ShardedSafetensors.writeSharded(tmp, tensors, Map.of("format", "pt"), maxShardBytes);
            Files.writeString(tmp.resolve("config.json"), model.config().toJsonString() + "\n",
                    StandardCharsets.UTF_8);
        });
    }

    public static void savePretrained(PreTrainedModel model, Path dir) throws IOException {
        savePretrained(model, dir, DEFAULT_MAX_SHARD_BYTES);
    }

}
