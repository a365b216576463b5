package io.peft4j.nn.train;

import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Appends every log and evaluation record of a {@link Trainer} run to a JSON-lines file, one object per line
 * ({@code {"step": 10, "loss": ..., "learning_rate": ...}}), flushed as written so a crashed run keeps its metrics.
 */
public final class MetricsLogger implements TrainerCallback, AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path file;
    private final BufferedWriter out;

    public MetricsLogger(Path file) {
        this.file = file;
        try {
            if (file.getParent() != null) {
                Files.createDirectories(file.getParent());
            }
            out = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open metrics file " + file + ": " + e.getMessage(), e);
        }
    }

    @Override
    public void onLog(TrainerState state, Map<String, Double> logs) {
        write(logs);
    }

    @Override
    public void onEvaluate(TrainerState state, Map<String, Double> metrics) {
        write(metrics);
    }

    private void write(Map<String, Double> values) {
        Map<String, Object> rec = new LinkedHashMap<>();
        Double step = values.get("step");
        if (step != null) {
            rec.put("step", step.longValue());
        }
        values.forEach((k, v) -> {
            if (!k.equals("step")) {
                rec.put(k, v);
            }
        });
        try {
            out.write(JSON.writeValueAsString(rec));
            out.newLine();
            out.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write metrics to " + file + ": " + e.getMessage(), e);
        }
    }

    @Override
    public void close() {
        try {
            out.close();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
