package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/** The value of {@code init_lora_weights}: {@code true}, {@code false}, or the name of an initialisation scheme. */
public final class InitLoraWeights {
    /** The string values peft accepts ({@code pissa_niter_<N>} is matched by pattern). */
    public static final List<String> KNOWN_NAMES = List.of(
            "gaussian", "eva", "olora", "pissa", "pissa_niter_[number of iters]", "corda", "loftq", "orthogonal",
            "mica", "lora_ga");
    private static final Pattern PISSA_NITER = Pattern.compile("pissa_niter_\\d+");

    public static final InitLoraWeights TRUE = new InitLoraWeights(Boolean.TRUE, null);
    public static final InitLoraWeights FALSE = new InitLoraWeights(Boolean.FALSE, null);

    private final Boolean bool;
    private final String name;

    private InitLoraWeights(Boolean bool, String name) {
        this.bool = bool;
        this.name = name;
    }

    public static InitLoraWeights of(boolean value) {
        return value ? TRUE : FALSE;
    }

    /** A named scheme; throws {@link PeftConfigException} for names peft does not know. */
    public static InitLoraWeights of(String name) {
        Objects.requireNonNull(name, "name");
        if (!isKnownName(name)) {
            throw new PeftConfigException("LoraConfig: field 'init_lora_weights' must be true, false or one of "
                    + KNOWN_NAMES + " but was '" + name + "'");
        }
        return new InitLoraWeights(null, name);
    }

    static boolean isKnownName(String name) {
        return KNOWN_NAMES.contains(name) && !name.startsWith("pissa_niter_") || PISSA_NITER.matcher(name).matches();
    }

    public boolean isTrue() {
        return Boolean.TRUE.equals(bool);
    }

    public boolean isFalse() {
        return Boolean.FALSE.equals(bool);
    }

    public boolean isString() {
        return name != null;
    }

    /** The scheme name, or null for the boolean forms. */
    public String name() {
        return name;
    }

    /** Number of PiSSA power iterations for {@code pissa_niter_<N>}, else -1. */
    public int pissaNiter() {
        return name != null && PISSA_NITER.matcher(name).matches()
                ? Integer.parseInt(name.substring("pissa_niter_".length())) : -1;
    }

    JsonNode toJsonNode() {
        return bool != null ? PythonJson.NODES.booleanNode(bool) : PythonJson.NODES.textNode(name);
    }

    static InitLoraWeights fromJson(JsonNode node, String source) {
        if (node.isBoolean()) {
            return of(node.booleanValue());
        }
        if (node.isTextual() && isKnownName(node.textValue())) {
            return new InitLoraWeights(null, node.textValue());
        }
        throw new PeftConfigException(source + ": field 'init_lora_weights' must be true, false or one of "
                + KNOWN_NAMES + " but was " + node);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof InitLoraWeights i && Objects.equals(bool, i.bool) && Objects.equals(name, i.name);
    }

    @Override
    public int hashCode() {
        return Objects.hash(bool, name);
    }

    @Override
    public String toString() {
        return bool != null ? (bool ? "True" : "False") : name;
    }
}
