package io.peft4j.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Small helpers shared by the commands. */
final class Cli {
    static final ObjectMapper JSON = new ObjectMapper();

    private Cli() {}

    static Path requireDir(Path p, String what) throws IOException {
        if (!Files.isDirectory(p)) {
            throw new IOException(what + " " + p + " is not a directory");
        }
        return p;
    }

    static Path requireFile(Path p, String what) throws IOException {
        if (!Files.isRegularFile(p)) {
            throw new IOException(what + " " + p + " does not exist");
        }
        return p;
    }

    static JsonNode readJson(Path p) throws IOException {
        requireFile(p, "input file");
        try {
            return JSON.readTree(p.toFile());
        } catch (IOException e) {
            throw new IOException(p + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
    }

    /** A rectangular {@code [[...], ...]} of integers as an INT64 array. */
    static NDArray int64Matrix(NDManager m, JsonNode rows, String field, Path source) throws IOException {
        if (rows == null || !rows.isArray() || rows.isEmpty()) {
            throw new IOException(source + ": '" + field + "' must be a non-empty list of lists of integers");
        }
        JsonNode first = rows.get(0);
        if (!first.isArray() || first.isEmpty()) {
            throw new IOException(source + ": '" + field + "' must be a list of non-empty lists of integers");
        }
        int b = rows.size();
        int t = first.size();
        long[] v = new long[b * t];
        for (int i = 0; i < b; i++) {
            JsonNode row = rows.get(i);
            if (!row.isArray() || row.size() != t) {
                throw new IOException(source + ": '" + field + "' row " + i + " has " + (row.isArray() ? row.size()
                        : "no") + " entries; every row must have " + t);
            }
            for (int j = 0; j < t; j++) {
                JsonNode x = row.get(j);
                if (!x.isIntegralNumber()) {
                    throw new IOException(source + ": '" + field + "'[" + i + "][" + j + "] is not an integer: " + x);
                }
                v[i * t + j] = x.asLong();
            }
        }
        return m.create(v, new Shape(b, t)).toType(DataType.INT64, false);
    }
}
