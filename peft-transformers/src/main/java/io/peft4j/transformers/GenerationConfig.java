package io.peft4j.transformers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * How {@link Generation} decodes, as transformers' {@code GenerationConfig}: greedy unless {@code doSample},
 * sampling warped by temperature, top-k and top-p (HF's defaults: 1.0, 50, 1.0), stop on any of the EOS ids.
 * Immutable; build one with {@link #builder()} or read {@code generation_config.json} with
 * {@link #fromPretrained(Path)}.
 *
 * <p>Differences from transformers: the length is given only as {@code maxNewTokens} (default
 * {@value #DEFAULT_MAX_NEW_TOKENS}; {@code max_length} in a file is ignored), and {@code seed} seeds a
 * {@link java.util.Random} owned by one {@code generate} call, so a seeded call is reproducible on its own.
 */
public final class GenerationConfig {
    public static final int DEFAULT_MAX_NEW_TOKENS = 32;
    public static final String FILE_NAME = "generation_config.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final int maxNewTokens;
    private final boolean doSample;
    private final double temperature;
    private final int topK;
    private final double topP;
    private final List<Long> eosTokenIds;
    private final Long padTokenId;
    private final Long bosTokenId;
    private final Long seed;
    private final boolean useCache;

    private GenerationConfig(Builder b) {
        if (b.maxNewTokens < 1) {
            throw new IllegalArgumentException("max_new_tokens must be >= 1, got " + b.maxNewTokens);
        }
        if (b.doSample) {
            // transformers rejects these when it builds the sampling warpers.
            if (!(b.temperature > 0) || Double.isInfinite(b.temperature)) {
                throw new IllegalArgumentException("temperature must be a strictly positive finite number when "
                        + "sampling, got " + b.temperature);
            }
            if (b.topK < 0) {
                throw new IllegalArgumentException("top_k must be >= 0 (0 disables it), got " + b.topK);
            }
            if (!(b.topP >= 0 && b.topP <= 1)) {
                throw new IllegalArgumentException("top_p must be in [0, 1], got " + b.topP);
            }
        }
        this.maxNewTokens = b.maxNewTokens;
        this.doSample = b.doSample;
        this.temperature = b.temperature;
        this.topK = b.topK;
        this.topP = b.topP;
        this.eosTokenIds = List.copyOf(b.eosTokenIds);
        this.padTokenId = b.padTokenId;
        this.bosTokenId = b.bosTokenId;
        this.seed = b.seed;
        this.useCache = b.useCache;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** All defaults: greedy, {@value #DEFAULT_MAX_NEW_TOKENS} new tokens, no EOS, cache on. */
    public static GenerationConfig defaults() {
        return builder().build();
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.maxNewTokens = maxNewTokens;
        b.doSample = doSample;
        b.temperature = temperature;
        b.topK = topK;
        b.topP = topP;
        b.eosTokenIds = new ArrayList<>(eosTokenIds);
        b.padTokenId = padTokenId;
        b.bosTokenId = bosTokenId;
        b.seed = seed;
        b.useCache = useCache;
        return b;
    }

    /**
     * The generation settings of a transformers model directory: {@code generation_config.json} when present,
     * else the special token ids of {@code config.json} (what transformers' {@code from_model_config} takes),
     * else the defaults. Fields absent from the file keep HF's defaults.
     */
    public static GenerationConfig fromPretrained(Path dir) throws IOException {
        Path file = dir.resolve(FILE_NAME);
        if (Files.isRegularFile(file)) {
            return fromJson(readObject(file), file.toString(), true);
        }
        Path config = dir.resolve("config.json");
        if (Files.isRegularFile(config)) {
            return fromJson(readObject(config), config.toString(), false);
        }
        return defaults();
    }

    private static JsonNode readObject(Path file) throws IOException {
        JsonNode node;
        try {
            node = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new IOException(file + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")", e);
        }
        if (node == null || !node.isObject()) {
            throw new IOException(file + ": expected a JSON object");
        }
        return node;
    }

    /**
     * Reads HF field names from a {@code generation_config.json} object; with {@code allFields} false only the
     * token ids are taken (a {@code config.json}).
     */
    static GenerationConfig fromJson(JsonNode json, String source, boolean allFields) {
        Builder b = builder();
        if (allFields) {
            Integer maxNew = intField(json, "max_new_tokens", source);
            if (maxNew != null) {
                b.maxNewTokens(maxNew);
            }
            if (present(json, "do_sample")) {
                if (!json.get("do_sample").isBoolean()) {
                    throw new IllegalArgumentException(source + ": do_sample must be true or false, got "
                            + json.get("do_sample"));
                }
                b.doSample(json.get("do_sample").asBoolean());
            }
            Double t = numberField(json, "temperature", source);
            if (t != null) {
                b.temperature(t);
            }
            Integer k = intField(json, "top_k", source);
            if (k != null) {
                b.topK(k);
            }
            Double p = numberField(json, "top_p", source);
            if (p != null) {
                b.topP(p);
            }
            if (present(json, "use_cache")) {
                b.useCache(json.get("use_cache").asBoolean(true));
            }
        }
        if (present(json, "eos_token_id")) {
            JsonNode eos = json.get("eos_token_id");
            List<Long> ids = new ArrayList<>();
            if (eos.isArray()) {
                for (JsonNode e : eos) {
                    ids.add(tokenId(e, "eos_token_id", source));
                }
            } else {
                ids.add(tokenId(eos, "eos_token_id", source));
            }
            b.eosTokenIds(ids);
        }
        if (present(json, "pad_token_id")) {
            b.padTokenId(tokenId(json.get("pad_token_id"), "pad_token_id", source));
        }
        if (present(json, "bos_token_id")) {
            b.bosTokenId(tokenId(json.get("bos_token_id"), "bos_token_id", source));
        }
        try {
            return b.build();
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(source + ": " + e.getMessage(), e);
        }
    }

    private static boolean present(JsonNode json, String key) {
        return json.hasNonNull(key);
    }

    private static Integer intField(JsonNode json, String key, String source) {
        if (!present(json, key)) {
            return null;
        }
        JsonNode n = json.get(key);
        if (!n.isIntegralNumber() || !n.canConvertToInt()) {
            throw new IllegalArgumentException(source + ": " + key + " must be an integer, got " + n);
        }
        return n.asInt();
    }

    private static Double numberField(JsonNode json, String key, String source) {
        if (!present(json, key)) {
            return null;
        }
        JsonNode n = json.get(key);
        if (!n.isNumber()) {
            throw new IllegalArgumentException(source + ": " + key + " must be a number, got " + n);
        }
        return n.asDouble();
    }

    private static long tokenId(JsonNode n, String key, String source) {
        if (!n.isIntegralNumber() || n.asLong() < 0) {
            throw new IllegalArgumentException(source + ": " + key + " must be a non-negative integer or a list of "
                    + "them, got " + n);
        }
        return n.asLong();
    }

    // ---- accessors ----------------------------------------------------------------------------------

    public int maxNewTokens() {
        return maxNewTokens;
    }

    public boolean doSample() {
        return doSample;
    }

    public double temperature() {
        return temperature;
    }

    /** Keep the k most likely tokens when sampling; 0 disables. */
    public int topK() {
        return topK;
    }

    /** Nucleus sampling threshold; 1.0 disables. */
    public double topP() {
        return topP;
    }

    /** Generation of a row stops after any of these; empty for none. */
    public List<Long> eosTokenIds() {
        return eosTokenIds;
    }

    /** Fills left padding and the steps after a row finished; null: the first EOS id (as transformers), else 0. */
    public Long padTokenId() {
        return padTokenId;
    }

    public Long bosTokenId() {
        return bosTokenId;
    }

    /** Seed of the sampler's {@link java.util.Random}; null for an unseeded one. */
    public Long seed() {
        return seed;
    }

    /** Reuse the model's key/value cache; false re-runs the whole sequence every step. */
    public boolean useCache() {
        return useCache;
    }

    /** The pad id {@link Generation} uses: {@code pad_token_id}, else the first EOS id, else 0. */
    public long effectivePadTokenId() {
        if (padTokenId != null) {
            return padTokenId;
        }
        return eosTokenIds.isEmpty() ? 0L : eosTokenIds.get(0);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GenerationConfig g && maxNewTokens == g.maxNewTokens && doSample == g.doSample
                && Double.compare(temperature, g.temperature) == 0 && topK == g.topK
                && Double.compare(topP, g.topP) == 0 && eosTokenIds.equals(g.eosTokenIds)
                && Objects.equals(padTokenId, g.padTokenId) && Objects.equals(bosTokenId, g.bosTokenId)
                && Objects.equals(seed, g.seed) && useCache == g.useCache;
    }

    @Override
    public int hashCode() {
        return Objects.hash(maxNewTokens, doSample, temperature, topK, topP, eosTokenIds, padTokenId, bosTokenId, seed,
                useCache);
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "GenerationConfig{max_new_tokens=%d, do_sample=%s, temperature=%s, "
                + "top_k=%d, top_p=%s, eos_token_id=%s, pad_token_id=%s, bos_token_id=%s, seed=%s, use_cache=%s}",
                maxNewTokens, doSample, temperature, topK, topP, eosTokenIds, padTokenId, bosTokenId, seed, useCache);
    }

    /** Builder for {@link GenerationConfig}; starts from HF's defaults. */
    public static final class Builder {
        private int maxNewTokens = DEFAULT_MAX_NEW_TOKENS;
        private boolean doSample;
        private double temperature = 1.0;
        private int topK = 50;
        private double topP = 1.0;
        private List<Long> eosTokenIds = new ArrayList<>();
        private Long padTokenId;
        private Long bosTokenId;
        private Long seed;
        private boolean useCache = true;

        private Builder() {}

        public Builder maxNewTokens(int v) {
            maxNewTokens = v;
            return this;
        }

        public Builder doSample(boolean v) {
            doSample = v;
            return this;
        }

        public Builder temperature(double v) {
            temperature = v;
            return this;
        }

        public Builder topK(int v) {
            topK = v;
            return this;
        }

        public Builder topP(double v) {
            topP = v;
            return this;
        }

        /** One EOS id, or none with null. */
        public Builder eosTokenId(Long v) {
            eosTokenIds = new ArrayList<>();
            if (v != null) {
                eosTokenIds.add(v);
            }
            return this;
        }

        public Builder eosTokenIds(List<Long> v) {
            for (Long id : v) {
                if (id == null || id < 0) {
                    throw new IllegalArgumentException("eos_token_id must be non-negative, got " + v);
                }
            }
            eosTokenIds = new ArrayList<>(v);
            return this;
        }

        public Builder padTokenId(Long v) {
            if (v != null && v < 0) {
                throw new IllegalArgumentException("pad_token_id must be non-negative, got " + v);
            }
            padTokenId = v;
            return this;
        }

        public Builder bosTokenId(Long v) {
            bosTokenId = v;
            return this;
        }

        public Builder seed(Long v) {
            seed = v;
            return this;
        }

        public Builder useCache(boolean v) {
            useCache = v;
            return this;
        }

        public GenerationConfig build() {
            return new GenerationConfig(this);
        }
    }
}
