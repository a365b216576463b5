package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.peft4j.nn.safetensors.SafetensorsFile;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.nio.file.Paths;

import static org.assertj.core.api.Assertions.assertThat;

/** The Hugging Face reference data copied into this module's test resources (see its README.md). */
final class Reference {
    static final ObjectMapper JSON = new ObjectMapper();

    private Reference() {}

    static Path root() {
        try {
            return Paths.get(Reference.class.getResource("/hf-reference").toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Path model(String name) {
        return root().resolve("models").resolve(name);
    }

    static Path adapter(String name) {
        return root().resolve("adapters").resolve(name);
    }

    static JsonNode manifest(String name) throws IOException {
        return JSON.readTree(root().resolve("outputs").resolve(name + ".json").toFile());
    }

    static float[] tensor(String outputs, String key) throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(root().resolve("outputs").resolve(outputs + ".safetensors"))) {
            return f.toFloatArray(key);
        }
    }

    static NDArray[] inputs(NDManager m) throws IOException {
        JsonNode in = JSON.readTree(root().resolve("inputs.json").toFile());
        return new NDArray[] {toLongArray(m, in.get("input_ids")), toLongArray(m, in.get("attention_mask"))};
    }

    private static NDArray toLongArray(NDManager m, JsonNode rows) {
        int b = rows.size();
        int t = rows.get(0).size();
        long[] v = new long[b * t];
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                v[i * t + j] = rows.get(i).get(j).asLong();
            }
        }
        return m.create(v, new Shape(b, t)).toType(DataType.INT64, false);
    }

    /** {@code |actual - ref| <= 1e-4 + 1e-4 * |ref|} everywhere; returns the max abs diff. */
    static double assertClose(float[] actual, float[] ref, String what) {
        assertThat(actual).as(what + " length").hasSameSizeAs(ref);
        double max = 0;
        for (int i = 0; i < ref.length; i++) {
            double d = Math.abs(actual[i] - ref[i]);
            max = Math.max(max, d);
            if (d > 1e-4 + 1e-4 * Math.abs(ref[i])) {
                throw new AssertionError(what + ": element " + i + " is " + actual[i] + ", reference " + ref[i]
                        + " (|diff| " + d + ")");
            }
        }
        System.out.printf(java.util.Locale.ROOT, "parity %s: max abs diff %.3g%n", what, max);
        return max;
    }
}
