package io.peft4j.tuners;

import io.peft4j.config.TargetModules;

import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Hugging Face peft's rules for deciding which modules an adapter targets, shared by every tuner.
 *
 * <p>A string target is a regex that must match the whole dotted path; a list entry matches the path
 * exactly or as a suffix on a dot boundary (entries are names, not regexes).
 */
public final class TargetMatcher {
    private static final Pattern FIRST_LAYER_INDEX = Pattern.compile(".*?\\.[^.]*\\.(\\d+)\\.");

    private TargetMatcher() {}

    /** Outcome of matching one module path. */
    public enum Match { MATCHED, UNMATCHED, EXCLUDED }

    /**
     * @param key dotted module path relative to the wrapped model
     * @param layersToTransform null or the layer indices to adapt (list targets only)
     * @param layersPattern null or names of the layer list (e.g. {@code "layers"})
     */
    public static Match check(TargetModules targets, TargetModules exclude, List<String> modulesToSave,
                              List<Integer> layersToTransform, List<String> layersPattern, String key) {
        if (exclude != null && matchesListOrRegex(exclude, key)) {
            return Match.EXCLUDED;
        }
        if (modulesToSave != null && insideModuleToSave(modulesToSave, key)) {
            return Match.EXCLUDED;
        }
        if (targets == null) {
            return Match.UNMATCHED;
        }
        if (targets.isRegex() || targets.isAllLinear()) {
            String regex = targets.isAllLinear() ? "all-linear" : targets.regex();
            return Pattern.compile(regex).matcher(key).matches() ? Match.MATCHED : Match.UNMATCHED;
        }
        if (!matchesList(targets.names(), key)) {
            return Match.UNMATCHED;
        }
        if (layersToTransform != null && !layersToTransform.isEmpty()) {
            Integer index = layerIndex(key, layersPattern);
            if (index == null || !layersToTransform.contains(index)) {
                return Match.UNMATCHED;
            }
        }
        return Match.MATCHED;
    }

    /**
     * A module to save, or inside one. peft tests {@code key.endswith(name)} as a plain string suffix, so
     * {@code "classifier"} also selects {@code "pre_classifier"}.
     */
    static boolean insideModuleToSave(List<String> modulesToSave, String key) {
        for (String prefix = key; !prefix.isEmpty(); ) {
            for (String m : modulesToSave) {
                if (prefix.endsWith(m)) {
                    return true;
                }
            }
            int dot = prefix.lastIndexOf('.');
            prefix = dot < 0 ? "" : prefix.substring(0, dot);
        }
        return false;
    }

    private static boolean matchesListOrRegex(TargetModules t, String key) {
        if (t.isRegex() || t.isAllLinear()) {
            return Pattern.compile(t.isAllLinear() ? "all-linear" : t.regex()).matcher(key).matches();
        }
        return matchesList(t.names(), key);
    }

    /** {@code key in names or key.endswith("." + name)}. */
    public static boolean matchesList(List<String> names, String key) {
        for (String t : names) {
            if (key.equals(t) || key.endsWith("." + t)) {
                return true;
            }
        }
        return false;
    }

    /** The layer index used by {@code layers_to_transform}, or null when the path has none. */
    public static Integer layerIndex(String key, List<String> layersPattern) {
        if (layersPattern == null || layersPattern.isEmpty()) {
            Matcher m = FIRST_LAYER_INDEX.matcher(key);
            return m.lookingAt() ? Integer.valueOf(m.group(1)) : null;
        }
        for (String p : layersPattern) {
            Matcher m = Pattern.compile(".*?\\." + p + "\\.(\\d+)\\.").matcher(key);
            if (m.lookingAt()) {
                return Integer.valueOf(m.group(1));
            }
        }
        return null;
    }

    /**
     * The value of the first pattern (in insertion order) that matches the end of {@code key} on a dot
     * boundary, as peft's {@code rank_pattern}/{@code alpha_pattern}; {@code dflt} when none does.
     */
    public static <V> V patternValue(Map<String, V> patterns, String key, V dflt) {
        if (patterns == null) {
            return dflt;
        }
        for (Map.Entry<String, V> e : patterns.entrySet()) {
            if (Pattern.compile("(.*\\.)?(" + e.getKey() + ")").matcher(key).matches()) {
                return e.getValue();
            }
        }
        return dflt;
    }
}
