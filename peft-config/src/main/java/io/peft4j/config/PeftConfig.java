package io.peft4j.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.BiFunction;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Base of all adapter configurations: an immutable value object mirroring one {@code adapter_config.json}.
 *
 * <p>New config classes (in other modules) extend this with a {@link ConfigSchema}, an {@link AbstractBuilder}
 * subclass and the protected decoding helpers, and make themselves loadable with {@link #register}.
 *
 * <p>Every config keeps the JSON value of each field it knows (so number types such as {@code 16} vs {@code 16.0}
 * survive a round trip), remembers which keys it was read with (so it writes back exactly those), and keeps keys it
 * does not know in {@link #unknownFields()}.
 */
public abstract class PeftConfig {
    /** File name peft uses inside an adapter directory. */
    public static final String CONFIG_NAME = "adapter_config.json";

    private static final Logger LOG = LoggerFactory.getLogger(PeftConfig.class);
    private static final ObjectMapper READER = JsonMapper.builder()
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .build();
    private static final Map<PeftType, BiFunction<ObjectNode, String, ? extends PeftConfig>> REGISTRY =
            Collections.synchronizedMap(new EnumMap<>(PeftType.class));

    static {
        REGISTRY.put(PeftType.LORA, LoraConfig::parse);
        REGISTRY.put(PeftType.ADALORA, AdaLoraConfig::parse);
        REGISTRY.put(PeftType.IA3, IA3Config::parse);
        REGISTRY.put(PeftType.PROMPT_TUNING, PromptTuningConfig::parse);
        REGISTRY.put(PeftType.PREFIX_TUNING, PrefixTuningConfig::parse);
        REGISTRY.put(PeftType.P_TUNING, PromptEncoderConfig::parse);
    }

    private final ConfigSchema schema;
    private final String sourceName;
    private final LinkedHashMap<String, JsonNode> values;
    private final Set<String> baseKeys;
    private final LinkedHashMap<String, JsonNode> unknownFields;

    private final TaskType taskType;
    private final String baseModelNameOrPath;
    private final String revision;
    private final boolean inferenceMode;
    private final String peftVersion;
    private final Map<String, Object> autoMapping;

    protected PeftConfig(AbstractBuilder<?, ?> b) {
        this.schema = b.schema;
        this.sourceName = b.sourceName;
        this.values = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : schema.defaults().entrySet()) {
            JsonNode v = b.values.get(e.getKey());
            values.put(e.getKey(), v == null ? e.getValue().deepCopy() : v.deepCopy());
        }
        // a subclass always forces its own type, as peft's __post_init__ does
        values.put("peft_type", PythonJson.NODES.textNode(schema.peftType.name()));
        this.baseKeys = Collections.unmodifiableSet(new LinkedHashSet<>(b.baseKeys));
        this.unknownFields = new LinkedHashMap<>();
        b.unknown.forEach((k, v) -> unknownFields.put(k, v.deepCopy()));

        this.taskType = optEnum("task_type", TaskType.class);
        this.baseModelNameOrPath = optString("base_model_name_or_path");
        this.revision = optString("revision");
        this.inferenceMode = bool("inference_mode");
        this.peftVersion = optString("peft_version");
        this.autoMapping = optMap("auto_mapping");
    }

    // ------------------------------------------------------------------ registry and loading

    /** Registers (or replaces) the parser used by {@link #fromJson} for {@code type}. */
    public static void register(PeftType type, Function<ObjectNode, ? extends PeftConfig> parser) {
        Objects.requireNonNull(parser, "parser");
        REGISTRY.put(Objects.requireNonNull(type, "type"), (node, source) -> parser.apply(node));
    }

    /** Registers a parser that also receives the source name (file path) for error messages. */
    public static void register(PeftType type, BiFunction<ObjectNode, String, ? extends PeftConfig> parser) {
        REGISTRY.put(Objects.requireNonNull(type, "type"), Objects.requireNonNull(parser, "parser"));
    }

    /** Removes the parser for {@code type} (mainly for tests); built-in types can be re-registered. */
    public static void unregister(PeftType type) {
        REGISTRY.remove(type);
    }

    /** Peft types that {@link #fromJson} can currently load, in enum order. */
    public static Set<PeftType> supportedTypes() {
        synchronized (REGISTRY) {
            return Collections.unmodifiableSet(new TreeSet<>(REGISTRY.keySet()));
        }
    }

    /** Whether a config class is registered for {@code type}. */
    public static boolean isSupported(PeftType type) {
        return REGISTRY.containsKey(type);
    }

    /** Reads {@code adapter_config.json} from an adapter directory, or the given file. */
    public static PeftConfig fromPretrained(Path dirOrFile) {
        Path file = Files.isDirectory(dirOrFile) ? dirOrFile.resolve(CONFIG_NAME) : dirOrFile;
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new PeftConfigException(file + ": cannot read adapter config: " + e, e);
        }
        return fromJson(text, file.toString());
    }

    /** Parses config JSON; {@code sourceName} (e.g. the file path) is used in error messages. */
    public static PeftConfig fromJson(String json, String sourceName) {
        String source = sourceName == null ? CONFIG_NAME : sourceName;
        JsonNode tree;
        try {
            tree = READER.readTree(json);
        } catch (JsonProcessingException e) {
            throw new PeftConfigException(source + ": invalid JSON: " + e.getOriginalMessage(), e);
        }
        if (tree == null || !tree.isObject()) {
            throw new PeftConfigException(source + ": expected a JSON object but got "
                    + (tree == null ? "nothing" : tree.getNodeType()));
        }
        return fromJsonNode((ObjectNode) tree, source);
    }

    /** Dispatches on {@code peft_type} to the registered config class. */
    public static PeftConfig fromJsonNode(ObjectNode tree, String sourceName) {
        String source = sourceName == null ? CONFIG_NAME : sourceName;
        JsonNode typeNode = tree.get("peft_type");
        if (typeNode == null || typeNode.isNull()) {
            throw new PeftConfigException(source + ": missing required key 'peft_type'");
        }
        PeftType type;
        try {
            type = PeftType.valueOf(typeNode.asText());
        } catch (IllegalArgumentException e) {
            throw new PeftConfigException(source + ": field 'peft_type' has unknown value " + typeNode
                    + "; known values are " + Arrays.toString(PeftType.values()));
        }
        BiFunction<ObjectNode, String, ? extends PeftConfig> parser = REGISTRY.get(type);
        if (parser == null) {
            throw new PeftConfigException(source + ": peft_type " + type
                    + " is not implemented by peft4j yet; supported types are " + supportedTypes());
        }
        return parser.apply(tree, source);
    }

    // ------------------------------------------------------------------ common getters

    public PeftType peftType() {
        return schema.peftType;
    }

    /** Task type, or null when the adapter was not created for a specific task. */
    public TaskType taskType() {
        return taskType;
    }

    public String baseModelNameOrPath() {
        return baseModelNameOrPath;
    }

    public String revision() {
        return revision;
    }

    public boolean inferenceMode() {
        return inferenceMode;
    }

    /** Version of peft that wrote the file (written by peft ≥ 0.18), or null. */
    public String peftVersion() {
        return peftVersion;
    }

    /** {@code {"base_model_class": ..., "parent_library": ...}} or null. */
    public Map<String, Object> autoMapping() {
        return autoMapping;
    }

    /** True for prompt-learning methods (prompt tuning, prefix tuning, P-tuning). */
    public boolean isPromptLearning() {
        return false;
    }

    /** Keys present in the source JSON that this class does not know; written back unchanged. */
    public Map<String, JsonNode> unknownFields() {
        Map<String, JsonNode> copy = new LinkedHashMap<>();
        unknownFields.forEach((k, v) -> copy.put(k, v.deepCopy()));
        return Collections.unmodifiableMap(copy);
    }

    /** The file or name this config was read from, or null when built in Java. */
    public String sourceName() {
        return sourceName;
    }

    // ------------------------------------------------------------------ writing

    /**
     * The JSON tree that would be written: the keys this config was read with (or, when built in Java, the keys
     * peft 0.13.2 writes), plus every field with a non-default value, plus unknown keys.
     */
    public ObjectNode toJsonNode() {
        ObjectNode out = PythonJson.NODES.objectNode();
        for (Map.Entry<String, JsonNode> e : values.entrySet()) {
            String key = e.getKey();
            if (key.equals("peft_type") || baseKeys.contains(key) || !e.getValue().equals(schema.defaultValue(key))) {
                out.set(key, e.getValue().deepCopy());
            }
        }
        unknownFields.forEach((k, v) -> out.set(k, v.deepCopy()));
        return out;
    }

    /** Exactly what peft writes: {@code json.dumps(to_dict(), indent=2, sort_keys=True)}. */
    public String toJson() {
        return PythonJson.dumps(toJsonNode());
    }

    /** Writes {@code dir/adapter_config.json} atomically, with {@code inference_mode} forced to true as peft does. */
    public void save(Path dir) {
        try {
            Files.createDirectories(dir);
            ObjectNode node = toJsonNode();
            node.put("inference_mode", true);
            Path target = dir.resolve(CONFIG_NAME);
            Path tmp = Files.createTempFile(dir, "." + CONFIG_NAME + ".", ".tmp");
            try {
                Files.writeString(tmp, PythonJson.dumps(node), StandardCharsets.UTF_8);
                try {
                    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
                }
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (IOException e) {
            throw new PeftConfigException(dir.resolve(CONFIG_NAME) + ": cannot write adapter config: " + e, e);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o != null && o.getClass() == getClass() && toJsonNode().equals(((PeftConfig) o).toJsonNode());
    }

    @Override
    public int hashCode() {
        return toJsonNode().hashCode();
    }

    @Override
    public String toString() {
        return schema.className + toJsonNode();
    }

    // ------------------------------------------------------------------ decoding helpers for subclasses

    /** Source for messages: the file (and class) if read from a file, else the class name. */
    protected final String source() {
        return sourceName == null ? schema.className : sourceName + " (" + schema.className + ")";
    }

    protected final PeftConfigException error(String field, String requirement, Object actual) {
        return new PeftConfigException(source() + ": field '" + field + "' " + requirement + " but was " + actual);
    }

    /** Raw JSON value of a known field (default if absent). */
    protected final JsonNode raw(String key) {
        JsonNode v = values.get(key);
        if (v == null) {
            throw new IllegalStateException("unknown field " + key + " for " + schema.className);
        }
        return v;
    }

    /** Deep copy of a field's JSON value, for fields peft4j keeps but does not interpret. */
    protected final JsonNode rawCopy(String key) {
        return raw(key).deepCopy();
    }

    protected final boolean isNull(String key) {
        return raw(key).isNull();
    }

    protected final int integer(String key) {
        JsonNode v = raw(key);
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw error(key, "must be an integer", v);
        }
        return v.intValue();
    }

    protected final Integer optInteger(String key) {
        return isNull(key) ? null : integer(key);
    }

    /** Any JSON number (not a boolean). */
    protected final Number number(String key) {
        JsonNode v = raw(key);
        if (!v.isNumber()) {
            throw error(key, "must be a number", v);
        }
        return v.numberValue();
    }

    protected final double dbl(String key) {
        return number(key).doubleValue();
    }

    protected final Double optDouble(String key) {
        return isNull(key) ? null : dbl(key);
    }

    protected final boolean bool(String key) {
        JsonNode v = raw(key);
        if (!v.isBoolean()) {
            throw error(key, "must be true or false", v);
        }
        return v.booleanValue();
    }

    protected final String optString(String key) {
        JsonNode v = raw(key);
        if (v.isNull()) {
            return null;
        }
        if (!v.isTextual()) {
            throw error(key, "must be a string or null", v);
        }
        return v.textValue();
    }

    protected final List<String> optStringList(String key) {
        JsonNode v = raw(key);
        if (v.isNull()) {
            return null;
        }
        if (!v.isArray()) {
            throw error(key, "must be a list of strings or null", v);
        }
        List<String> out = new ArrayList<>();
        for (JsonNode item : v) {
            if (!item.isTextual()) {
                throw error(key, "must be a list of strings or null", v);
            }
            out.add(item.textValue());
        }
        return Collections.unmodifiableList(out);
    }

    protected final List<Integer> optIntList(String key) {
        JsonNode v = raw(key);
        if (v.isNull()) {
            return null;
        }
        if (!v.isArray()) {
            throw error(key, "must be a list of integers or null", v);
        }
        List<Integer> out = new ArrayList<>();
        for (JsonNode item : v) {
            if (!item.isIntegralNumber() || !item.canConvertToInt()) {
                throw error(key, "must be a list of integers or null", v);
            }
            out.add(item.intValue());
        }
        return Collections.unmodifiableList(out);
    }

    protected final TargetModules optTargetModules(String key) {
        return TargetModules.fromJson(raw(key), source(), key);
    }

    @SuppressWarnings("unchecked")
    protected final Map<String, Object> optMap(String key) {
        JsonNode v = raw(key);
        if (v.isNull()) {
            return null;
        }
        if (!v.isObject()) {
            throw error(key, "must be an object or null", v);
        }
        return Collections.unmodifiableMap(PythonJson.MAPPER.convertValue(v, LinkedHashMap.class));
    }

    /** Enum stored by constant name (TaskType, PromptTuningInit, ...); unknown names list the allowed values. */
    protected final <E extends Enum<E>> E optEnum(String key, Class<E> type) {
        JsonNode v = raw(key);
        if (v.isNull()) {
            return null;
        }
        E[] constants = type.getEnumConstants();
        if (v.isTextual()) {
            for (E c : constants) {
                if (c.name().equals(v.textValue())) {
                    return c;
                }
            }
        }
        throw error(key, "must be one of " + Arrays.toString(constants) + " or null", v);
    }

    protected final <E extends Enum<E>> E requiredEnum(String key, Class<E> type) {
        E e = optEnum(key, type);
        if (e == null) {
            throw error(key, "must be one of " + Arrays.toString(type.getEnumConstants()), raw(key));
        }
        return e;
    }

    // ------------------------------------------------------------------ builder base

    /**
     * Common builder. Holds the JSON value of each field that was set, the keys to always write, and unknown keys.
     *
     * @param <C> config type built
     * @param <B> concrete builder type, for fluent chaining
     */
    public abstract static class AbstractBuilder<C extends PeftConfig, B extends AbstractBuilder<C, B>> {
        final ConfigSchema schema;
        final LinkedHashMap<String, JsonNode> values = new LinkedHashMap<>();
        final LinkedHashSet<String> baseKeys = new LinkedHashSet<>();
        final LinkedHashMap<String, JsonNode> unknown = new LinkedHashMap<>();
        String sourceName;

        protected AbstractBuilder(ConfigSchema schema) {
            this.schema = schema;
            baseKeys.addAll(schema.legacyKeys());
        }

        /** Seeds this builder with the state of an existing config (for toBuilder). */
        protected AbstractBuilder(ConfigSchema schema, PeftConfig from) {
            this.schema = schema;
            values.putAll(from.values);
            baseKeys.addAll(from.baseKeys);
            from.unknownFields.forEach((k, v) -> unknown.put(k, v.deepCopy()));
            sourceName = from.sourceName;
        }

        @SuppressWarnings("unchecked")
        protected final B self() {
            return (B) this;
        }

        /** Sets a known field's JSON value (null = JSON null). */
        protected final B set(String key, JsonNode value) {
            if (!schema.knows(key)) {
                throw new IllegalArgumentException(schema.className + " has no field '" + key + "'");
            }
            values.put(key, value == null ? PythonJson.NODES.nullNode() : value);
            return self();
        }

        protected final B setObject(String key, Object value) {
            return set(key, PythonJson.toNode(value));
        }

        /**
         * Loads all keys of a JSON object: known ones become field values (and are always written back),
         * unknown ones are kept and logged once each.
         */
        public final B readJson(ObjectNode tree, String source) {
            this.sourceName = source;
            baseKeys.clear();
            for (Iterator<Map.Entry<String, JsonNode>> it = tree.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                String key = e.getKey();
                if (schema.knows(key)) {
                    values.put(key, e.getValue().deepCopy());
                    baseKeys.add(key);
                } else if (key.equals("runtime_config")) {
                    // peft pops it too: runtime-only settings must not travel with the adapter
                    LOG.warn("{}: ignoring stored 'runtime_config' ({})", source, schema.className);
                } else {
                    unknown.put(key, e.getValue().deepCopy());
                    LOG.warn("{}: unknown key '{}' for {}; keeping it and writing it back unchanged",
                            source, key, schema.className);
                }
            }
            baseKeys.add("peft_type");
            return self();
        }

        public B taskType(TaskType taskType) {
            return set("task_type", taskType == null ? null : PythonJson.NODES.textNode(taskType.name()));
        }

        public B baseModelNameOrPath(String name) {
            return setObject("base_model_name_or_path", name);
        }

        public B revision(String revision) {
            return setObject("revision", revision);
        }

        public B inferenceMode(boolean inferenceMode) {
            return setObject("inference_mode", inferenceMode);
        }

        public B peftVersion(String peftVersion) {
            return setObject("peft_version", peftVersion);
        }

        public B autoMapping(Map<String, ?> autoMapping) {
            return setObject("auto_mapping", autoMapping);
        }

        /** Builds and validates; throws {@link PeftConfigException} naming the offending field. */
        public abstract C build();
    }
}
