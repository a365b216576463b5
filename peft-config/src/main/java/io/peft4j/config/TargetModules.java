package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;

/**
 * The value of {@code target_modules}/{@code exclude_modules}: either a list of module names (suffix match), or a
 * single string which peft treats as a regular expression (full match) — except the special string
 * {@code "all-linear"}. A list that happens to contain "all-linear" is an ordinary list.
 */
public final class TargetModules {
    public static final String ALL_LINEAR = "all-linear";

    private final List<String> names;
    private final String regex;

    private TargetModules(List<String> names, String regex) {
        this.names = names;
        this.regex = regex;
    }

    /** List form; order kept (peft stores a set, files list it in arbitrary order), duplicates dropped. */
    public static TargetModules of(String... names) {
        return of(Arrays.asList(names));
    }

    /** List form from a collection; order kept, duplicates dropped. */
    public static TargetModules of(Collection<String> names) {
        for (String n : names) {
            Objects.requireNonNull(n, "target module name");
        }
        return new TargetModules(Collections.unmodifiableList(new ArrayList<>(new LinkedHashSet<>(names))), null);
    }

    /** String form: a regex matched with {@code fullmatch} against the full module name. */
    public static TargetModules regex(String pattern) {
        return new TargetModules(null, Objects.requireNonNull(pattern, "pattern"));
    }

    /** The string {@code "all-linear"}: every linear layer except the output head. */
    public static TargetModules allLinear() {
        return regex(ALL_LINEAR);
    }

    /** True for the string form (including "all-linear"). */
    public boolean isRegex() {
        return regex != null;
    }

    /** True only for the string "all-linear" (case-insensitive), not for a list containing it. */
    public boolean isAllLinear() {
        return regex != null && regex.equalsIgnoreCase(ALL_LINEAR);
    }

    /** The string form, or null for the list form. */
    public String regex() {
        return regex;
    }

    /** The list form (unmodifiable), or an empty list for the string form. */
    public List<String> names() {
        return names == null ? List.of() : names;
    }

    /** As peft's error messages show it: the pattern, or the list of names. */
    public String describe() {
        return regex != null ? regex : names().toString();
    }

    /** JSON form as peft writes it: a string, or a list in insertion order. */
    public JsonNode toJsonNode() {
        if (regex != null) {
            return PythonJson.NODES.textNode(regex);
        }
        ArrayNode arr = PythonJson.NODES.arrayNode();
        names.forEach(arr::add);
        return arr;
    }

    /** Parses a JSON string or list of strings; null/JSON null gives null. */
    static TargetModules fromJson(JsonNode node, String source, String field) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return regex(node.textValue());
        }
        if (node.isArray()) {
            List<String> list = new ArrayList<>();
            for (JsonNode item : node) {
                if (!item.isTextual()) {
                    throw new PeftConfigException(source + ": field '" + field
                            + "' must be a string or a list of strings but contained " + item);
                }
                list.add(item.textValue());
            }
            return of(list);
        }
        throw new PeftConfigException(source + ": field '" + field
                + "' must be a string or a list of strings but was " + node);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TargetModules t && Objects.equals(names, t.names) && Objects.equals(regex, t.regex);
    }

    @Override
    public int hashCode() {
        return Objects.hash(names, regex);
    }

    @Override
    public String toString() {
        return regex != null ? "'" + regex + "'" : names.toString();
    }
}
