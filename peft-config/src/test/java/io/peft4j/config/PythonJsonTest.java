package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class PythonJsonTest {
    private static final ObjectMapper M = new ObjectMapper();

    /** Expected strings are what CPython 3 prints for repr(float(x)). */
    @ParameterizedTest
    @CsvSource({
        "0.1, 0.1",
        "1e-05, 1e-05",
        "0.00001, 1e-05",
        "5e-06, 5e-06",
        "100.0, 100.0",
        "100, 100.0",
        "1e16, 1e+16",
        "1e15, 1000000000000000.0",
        "0.0001, 0.0001",
        "123456789.0, 123456789.0",
        "0.05, 0.05",
        "16.0, 16.0",
        "0.85, 0.85",
        "0.0, 0.0",
        "-0.0, -0.0",
        "-2.5, -2.5",
        "0.30000000000000004, 0.30000000000000004",
        "2e-07, 2e-07",
        "1.5e+16, 1.5e+16",
        "123456789012345680.0, 1.2345678901234568e+17",
        "4.9e-324, 5e-324",
        "1.7976931348623157e308, 1.7976931348623157e+308",
        "1e22, 1e+22",
        "2e-3, 0.002",
        "5e-324, 5e-324"
    })
    void floatReprMatchesPython(double value, String expected) {
        assertThat(PythonJson.floatRepr(value)).isEqualTo(expected);
    }

    @Test
    void nonFiniteFloatsAsPythonWritesThem() {
        assertThat(PythonJson.floatRepr(Double.NaN)).isEqualTo("NaN");
        assertThat(PythonJson.floatRepr(Double.POSITIVE_INFINITY)).isEqualTo("Infinity");
        assertThat(PythonJson.floatRepr(Double.NEGATIVE_INFINITY)).isEqualTo("-Infinity");
    }

    @Test
    void layoutMatchesJsonDumpsIndent2SortKeys() throws Exception {
        JsonNode tree = M.readTree("{\"b\": [1, 2.0, {\"y\": null, \"x\": []}], \"a\": {}, \"c\": {\"k\": true}}");
        String expected = "{\n"
                + "  \"a\": {},\n"
                + "  \"b\": [\n"
                + "    1,\n"
                + "    2.0,\n"
                + "    {\n"
                + "      \"x\": [],\n"
                + "      \"y\": null\n"
                + "    }\n"
                + "  ],\n"
                + "  \"c\": {\n"
                + "    \"k\": true\n"
                + "  }\n"
                + "}";
        assertThat(PythonJson.dumps(tree)).isEqualTo(expected);
    }

    @Test
    void intsStayIntsAndFloatsStayFloats() throws Exception {
        assertThat(PythonJson.dumps(M.readTree("[16, 16.0, 1e-5, 12345678901234567890]")))
                .isEqualTo("[\n  16,\n  16.0,\n  1e-05,\n  12345678901234567890\n]");
    }

    @Test
    void stringsAreEscapedLikeEnsureAscii() {
        String s = "caf\u00e9 \"q\" back\\slash\n\t\r\b\f\u0001\u007f \ud83d\ude00 /";
        String expected = "\"caf\\u00e9 \\\"q\\\" back\\\\slash\\n\\t\\r\\b\\f\\u0001\\u007f \\ud83d\\ude00 /\"";
        assertThat(PythonJson.dumps(PythonJson.NODES.textNode(s))).isEqualTo(expected);
    }

    @Test
    void keysSortByCodePointLikePython() {
        var obj = PythonJson.NODES.objectNode();
        obj.put("a", 1);
        obj.put("\ud83d\ude00", 2); // U+1F600, sorts after U+FFFD in Python
        obj.put("\ufffd", 3);
        obj.put("B", 4);
        obj.put("_x", 5);
        obj.put("deltaT", 6);
        obj.put("delta_t", 7);
        assertThat(PythonJson.dumps(obj)).isEqualTo("{\n"
                + "  \"B\": 4,\n"
                + "  \"_x\": 5,\n"
                + "  \"a\": 1,\n"
                + "  \"deltaT\": 6,\n"
                + "  \"delta_t\": 7,\n"
                + "  \"\\ufffd\": 3,\n"
                + "  \"\\ud83d\\ude00\": 2\n"
                + "}");
    }
}
