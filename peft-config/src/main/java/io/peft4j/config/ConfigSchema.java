package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Describes a config class for {@link PeftConfig}: the JSON keys it knows, their Python defaults (with the exact JSON number type) and which of them
 * peft 0.13.2 writes for a fresh config ("legacy" keys) — newer keys are only written when non-default.
 */
public final class ConfigSchema {
    final String className;
    final PeftType peftType;
    private final LinkedHashMap<String, JsonNode> defaults = new LinkedHashMap<>();
    private final LinkedHashSet<String> legacyKeys = new LinkedHashSet<>();

    private ConfigSchema(String className, PeftType peftType) {
        this.className = className;
        this.peftType = peftType;
    }

    /**
     * Schema with the fields common to every PeftConfig; chain {@link #legacy}/{@link #newer} for the class's own
     * fields (defaults given as Java values: Integer/Double/Boolean/String/List/Map/null, or JsonNode).
     */
    public static ConfigSchema base(String className, PeftType peftType) {
        ConfigSchema s = new ConfigSchema(className, peftType);
        s.legacy("peft_type", PythonJson.NODES.textNode(peftType.name()));
        s.legacy("task_type", null);
        s.legacy("auto_mapping", null);
        s.legacy("base_model_name_or_path", null);
        s.legacy("revision", null);
        s.legacy("inference_mode", false);
        s.newer("peft_version", null);
        return s;
    }

    /** A field peft 0.13.2 writes for every fresh config of this class. */
    public ConfigSchema legacy(String key, Object defaultValue) {
        defaults.put(key, PythonJson.toNode(defaultValue));
        legacyKeys.add(key);
        return this;
    }

    /** A field added after peft 0.13.2: written only when set to a non-default value (or read from a file). */
    public ConfigSchema newer(String key, Object defaultValue) {
        defaults.put(key, PythonJson.toNode(defaultValue));
        legacyKeys.remove(key);
        return this;
    }

    boolean knows(String key) {
        return defaults.containsKey(key);
    }

    JsonNode defaultValue(String key) {
        return defaults.get(key);
    }

    Map<String, JsonNode> defaults() {
        return Collections.unmodifiableMap(defaults);
    }

    Set<String> legacyKeys() {
        return Collections.unmodifiableSet(legacyKeys);
    }
}
