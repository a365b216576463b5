package io.peft4j.nn.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A Hugging Face {@code config.json}, kept as JSON so every key round-trips, with typed accessors that fail
 * with the key's name.
 */
public final class ModelConfig {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final ObjectNode json;
    private final String source;

    public ModelConfig(ObjectNode json, String source) {
        this.json = json.deepCopy();
        this.source = source;
    }

    public static ModelConfig read(Path file) throws IOException {
        JsonNode node;
        try {
            node = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new IOException(file + ": not valid JSON: " + e.getMessage(), e);
        }
        if (!(node instanceof ObjectNode)) {
            throw new IOException(file + ": expected a JSON object");
        }
        return new ModelConfig((ObjectNode) node, file.toString());
    }

    public String source() {
        return source;
    }

    /** {@code model_type}, e.g. {@code "llama"}; null when absent. */
    public String modelType() {
        JsonNode n = json.get("model_type");
        return n == null || n.isNull() ? null : n.asText();
    }

    /** transformers' {@code architectures} (class names such as {@code GPT2LMHeadModel}); empty when absent. */
    public java.util.List<String> architectures() {
        java.util.List<String> out = new java.util.ArrayList<>();
        com.fasterxml.jackson.databind.JsonNode a = json().get("architectures");
        if (a != null && a.isArray()) {
            a.forEach(n -> out.add(n.asText()));
        }
        return out;
    }

    public boolean has(String key) {
        JsonNode n = json.get(key);
        return n != null && !n.isNull();
    }

    public int getInt(String key) {
        return (int) require(key, "an integer").asLong();
    }

    public int getInt(String key, int dflt) {
        return has(key) ? getInt(key) : dflt;
    }

    public double getDouble(String key) {
        return require(key, "a number").asDouble();
    }

    public double getDouble(String key, double dflt) {
        return has(key) ? getDouble(key) : dflt;
    }

    public boolean getBoolean(String key, boolean dflt) {
        return has(key) ? json.get(key).asBoolean() : dflt;
    }

    public String getString(String key, String dflt) {
        return has(key) ? json.get(key).asText() : dflt;
    }

    private JsonNode require(String key, String what) {
        JsonNode n = json.get(key);
        if (n == null || n.isNull()) {
            throw new IllegalArgumentException(source + ": missing required key '" + key + "'");
        }
        if (!n.isNumber()) {
            throw new IllegalArgumentException(source + ": key '" + key + "' must be " + what + ", got " + n);
        }
        return n;
    }

    /** A deep copy of the JSON. */
    public ObjectNode json() {
        return json.deepCopy();
    }

    /** A copy with one key replaced. */
    public ModelConfig with(String key, Object value) {
        ObjectNode copy = json.deepCopy();
        copy.set(key, JSON.valueToTree(value));
        return new ModelConfig(copy, source);
    }

    /** Pretty JSON as transformers writes it (2-space indent, keys sorted). */
    public String toJsonString() {
        try {
            return JSON.writer().with(com.fasterxml.jackson.databind.SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS)
                    .withDefaultPrettyPrinter().writeValueAsString(JSON.treeToValue(json, java.util.TreeMap.class));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
