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

    /** peft's {@code MIN_TARGET_MODULES_FOR_OPTIMIZATION}: target lists this long are condensed to suffixes. */
    public static final int MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20;

    /**
     * peft's {@code _find_minimal_target_modules}: the fewest suffixes that still select every target and none of
     * {@code others}, trying each target's shortest suffixes first (targets visited in the order of their suffix
     * lists, as peft sorts them). Returns the targets unchanged when no suffix qualifies.
     */
    public static java.util.Set<String> minimalTargetModules(java.util.Collection<String> targets,
                                                            java.util.Collection<String> others) {
        if (targets.isEmpty()) {
            throw new IllegalArgumentException("target_modules should be a list or set of strings.");
        }
        java.util.Set<String> t = new java.util.TreeSet<>(targets);
        if (t.contains("")) {
            throw new IllegalArgumentException("target_modules should not contain an empty string.");
        }
        java.util.Set<String> otherSuffixes = new java.util.HashSet<>();
        for (String o : others) {
            if (t.contains(o)) {
                throw new IllegalArgumentException("target_modules and other_module_names contain common elements: " + o);
            }
            otherSuffixes.addAll(suffixes(o));
        }
        List<List<String>> bySuffixes = new java.util.ArrayList<>();
        for (String item : t) {
            bySuffixes.add(suffixes(item));
        }
        // Python orders the lists element by element; the full name is each list's last element.
        bySuffixes.sort((a, b) -> {
            for (int i = 0; i < Math.min(a.size(), b.size()); i++) {
                int c = a.get(i).compareTo(b.get(i));
                if (c != 0) {
                    return c;
                }
            }
            return Integer.compare(a.size(), b.size());
        });
        java.util.Set<String> required = new java.util.LinkedHashSet<>();
        for (List<String> sfx : bySuffixes) {
            String item = sfx.get(sfx.size() - 1);
            for (String suffix : sfx) {
                if (required.contains(suffix) || otherSuffixes.contains(suffix)) {
                    continue;
                }
                if (required.stream().noneMatch(r -> item.endsWith("." + r))) {
                    required.add(suffix);
                    break;
                }
            }
        }
        return required.isEmpty() ? t : new java.util.TreeSet<>(required);
    }

    /** {@code "a.b.c" -> ["c", "b.c", "a.b.c"]}. */
    private static List<String> suffixes(String name) {
        String[] parts = name.split("\\.", -1);
        List<String> out = new java.util.ArrayList<>();
        for (int i = parts.length - 1; i >= 0; i--) {
            out.add(String.join(".", java.util.Arrays.asList(parts).subList(i, parts.length)));
        }
        return out;
    }
}
