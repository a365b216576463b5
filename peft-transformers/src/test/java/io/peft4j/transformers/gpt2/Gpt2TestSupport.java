package io.peft4j.transformers.gpt2;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Arrays;

final class Gpt2TestSupport {
    private Gpt2TestSupport() {}

    static Path resource(String path) {
        try {
            return Path.of(Gpt2TestSupport.class.getResource("/hf-reference/" + path).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The tiny random GPT-2 saved by transformers 4.45 (n_embd 64, 4 heads, 2 layers, vocab 256). */
    static Path modelDir() {
        return resource("models/gpt2");
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
        return Arrays.stream(a).flatMapToLong(Arrays::stream).toArray();
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

    /** Row {@code [r]} of a row-major {@code [rows, cols]} array. */
    static float[] rowOf(float[] all, int r, int cols) {
        return Arrays.copyOfRange(all, r * cols, (r + 1) * cols);
    }
}
