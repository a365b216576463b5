package io.peft4j.config;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Writes JSON byte-for-byte like Python's {@code json.dumps(obj, indent=2, sort_keys=True)} (ensure_ascii on),
 * so that configs saved by peft4j are indistinguishable from those written by Hugging Face peft.
 */
public final class PythonJson {
    /** Shared mapper; floats are read as doubles, which is what Python does too. */
    static final ObjectMapper MAPPER = new ObjectMapper();
    static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private PythonJson() {
    }

    /** Serialises {@code node} exactly as {@code json.dumps(node, indent=2, sort_keys=True)}; no trailing newline. */
    public static String dumps(JsonNode node) {
        StringBuilder sb = new StringBuilder();
        write(node, sb, 0);
        return sb.toString();
    }

    private static void write(JsonNode node, StringBuilder sb, int level) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            sb.append("null");
        } else if (node.isBoolean()) {
            sb.append(node.booleanValue() ? "true" : "false");
        } else if (node.isIntegralNumber()) {
            sb.append(node.bigIntegerValue().toString());
        } else if (node.isNumber()) {
            sb.append(floatRepr(node.doubleValue()));
        } else if (node.isTextual()) {
            appendString(node.textValue(), sb);
        } else if (node.isArray()) {
            if (node.isEmpty()) {
                sb.append("[]");
                return;
            }
            sb.append('[');
            boolean first = true;
            for (JsonNode item : node) {
                sb.append(first ? "" : ",");
                first = false;
                newline(sb, level + 1);
                write(item, sb, level + 1);
            }
            newline(sb, level);
            sb.append(']');
        } else if (node.isObject()) {
            if (node.isEmpty()) {
                sb.append("{}");
                return;
            }
            List<String> keys = new ArrayList<>();
            for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
                keys.add(it.next());
            }
            keys.sort(PythonJson::compareCodePoints);
            sb.append('{');
            boolean first = true;
            for (String key : keys) {
                sb.append(first ? "" : ",");
                first = false;
                newline(sb, level + 1);
                appendString(key, sb);
                sb.append(": ");
                write(node.get(key), sb, level + 1);
            }
            newline(sb, level);
            sb.append('}');
        } else if (node.isBinary() || node.isPojo()) {
            throw new IllegalArgumentException("cannot serialise JSON node of type " + node.getNodeType());
        }
    }

    private static void newline(StringBuilder sb, int level) {
        sb.append('\n');
        for (int i = 0; i < level; i++) {
            sb.append("  ");
        }
    }

    /** Python sorts str keys by code point; String.compareTo compares UTF-16 units, which differs above U+FFFF. */
    static int compareCodePoints(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Boolean.compare(i < a.length(), j < b.length());
    }

    /** Escapes like json.dumps with ensure_ascii=True: everything outside ' '..'~' becomes an escape. */
    static void appendString(String s, StringBuilder sb) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || c > 0x7e) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        sb.append('"');
    }

    /**
     * Python's {@code repr(float)}: the shortest decimal that round-trips, in fixed notation when the decimal
     * exponent is in [-4, 16), otherwise {@code d.ddde±XX}. Java 17's Double.toString is not always shortest,
     * so the digits are derived with BigDecimal.
     */
    public static String floatRepr(double d) {
        if (Double.isNaN(d)) {
            return "NaN";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "Infinity" : "-Infinity";
        }
        if (d == 0.0) {
            return (1.0 / d < 0) ? "-0.0" : "0.0";
        }
        BigDecimal exact = new BigDecimal(d);
        BigDecimal shortest = null;
        for (int precision = 1; precision <= 17; precision++) {
            BigDecimal candidate = exact.round(new MathContext(precision, RoundingMode.HALF_EVEN));
            if (candidate.doubleValue() == d) {
                shortest = candidate;
                break;
            }
        }
        if (shortest == null) {
            shortest = exact.round(new MathContext(17, RoundingMode.HALF_EVEN));
        }
        shortest = shortest.stripTrailingZeros();
        boolean negative = shortest.signum() < 0;
        String digits = shortest.unscaledValue().abs().toString();
        // value = 0.digits * 10^decpt
        int decpt = digits.length() - shortest.scale();
        StringBuilder sb = new StringBuilder();
        if (negative) {
            sb.append('-');
        }
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) {
                sb.append("0.");
                sb.append("0".repeat(-decpt));
                sb.append(digits);
            } else if (decpt >= digits.length()) {
                sb.append(digits);
                sb.append("0".repeat(decpt - digits.length()));
                sb.append(".0");
            } else {
                sb.append(digits, 0, decpt);
                sb.append('.');
                sb.append(digits, decpt, digits.length());
            }
        } else {
            sb.append(digits.charAt(0));
            if (digits.length() > 1) {
                sb.append('.');
                sb.append(digits, 1, digits.length());
            }
            int exp = decpt - 1;
            sb.append('e').append(exp < 0 ? '-' : '+');
            int abs = Math.abs(exp);
            if (abs < 10) {
                sb.append('0');
            }
            sb.append(abs);
        }
        return sb.toString();
    }

    /** Converts a Java value (Map, List, Number, String, Boolean, JsonNode, null) to a tree. */
    static JsonNode toNode(Object value) {
        if (value == null) {
            return NODES.nullNode();
        }
        if (value instanceof JsonNode n) {
            return n.deepCopy();
        }
        return MAPPER.valueToTree(value);
    }
}
