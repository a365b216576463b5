package io.peft4j.transformers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * The HF reference data copied into this module's test resources ({@code /hf-reference/...}) and the
 * comparisons every architecture's parity tests use. Per-architecture supports extend it, so a static import of
 * theirs brings these in too.
 */
public class ReferenceData {
    protected ReferenceData() {}

    public static Path resource(String path) {
        try {
            return Path.of(ReferenceData.class.getResource("/hf-reference/" + path).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The fixed reference input ids, {@code [2][10]}. */
    public static long[][] inputIds() throws IOException {
        JsonNode ids = new ObjectMapper().readTree(resource("inputs.json").toFile()).get("input_ids");
        long[][] out = new long[ids.size()][];
        for (int i = 0; i < ids.size(); i++) {
            out[i] = new long[ids.get(i).size()];
            for (int j = 0; j < out[i].length; j++) {
                out[i][j] = ids.get(i).get(j).asLong();
            }
        }
        return out;
    }

    public static long[] flat(long[][] a) {
        return Arrays.stream(a).flatMapToLong(Arrays::stream).toArray();
    }

    public static float maxAbsDiff(float[] a, float[] b) {
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    /** Index of the first element violating {@code |a - ref| <= atol + rtol*|ref|}, or -1. */
    public static int firstViolation(float[] actual, float[] ref, double atol, double rtol) {
        for (int i = 0; i < ref.length; i++) {
            if (!(Math.abs(actual[i] - ref[i]) <= atol + rtol * Math.abs(ref[i]))) {
                return i;
            }
        }
        return -1;
    }

    /** Row {@code [r]} of a row-major {@code [rows, cols]} array. */
    public static float[] rowOf(float[] all, int r, int cols) {
        return Arrays.copyOfRange(all, r * cols, (r + 1) * cols);
    }
}
