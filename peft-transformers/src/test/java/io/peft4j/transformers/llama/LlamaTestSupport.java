package io.peft4j.transformers.llama;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;

final class LlamaTestSupport {
    private LlamaTestSupport() {}

    static Path resource(String path) {
        try {
            return Path.of(LlamaTestSupport.class.getResource("/hf-reference/" + path).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Path modelDir() {
        return resource("models/llama");
    }

    /** The fixed reference input ids, {@code [2][10]}. */
    static long[][] inputIds() throws IOException {
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

    static long[] flat(long[][] a) {
        int n = 0;
        for (long[] r : a) {
            n += r.length;
        }
        long[] out = new long[n];
        int k = 0;
        for (long[] r : a) {
            for (long v : r) {
                out[k++] = v;
            }
        }
        return out;
    }

    static float maxAbsDiff(float[] a, float[] b) {
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    /** Index of the first element violating {@code |a - ref| <= atol + rtol*|ref|}, or -1. */
    static int firstViolation(float[] actual, float[] ref, double atol, double rtol) {
        for (int i = 0; i < ref.length; i++) {
            if (!(Math.abs(actual[i] - ref[i]) <= atol + rtol * Math.abs(ref[i]))) {
                return i;
            }
        }
        return -1;
    }
}
