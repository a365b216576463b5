package io.peft4j.transformers.bert;

import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.transformers.ReferenceData;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

/** Reference files of the tiny HF BERT (a BertForSequenceClassification) and small helpers; shared with DistilBERT tests. */
public final class BertTestSupport extends ReferenceData {
    private BertTestSupport() {}


    public static Path modelDir() {
        return resource("models/bert");
    }





    /** Every tensor of the reference checkpoint as float data, by name. */
    public static Map<String, TensorData> referenceTensors() throws IOException {
        Map<String, TensorData> tensors = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(modelDir().resolve("model.safetensors"))) {
            for (String name : f.names()) {
                tensors.put(name, TensorData.ofFloats(f.toFloatArray(name), f.info(name).shape()));
            }
        }
        return tensors;
    }

    /** Writes {@code config.json} and {@code model.safetensors} as a model directory. */
    public static Path writeModelDir(Path dir, String configJson, Map<String, TensorData> tensors) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), configJson);
        SafetensorsWriter.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
        return dir;
    }

    /** The reference checkpoint, edited, as a model directory with the reference config. */
    public static Path editedReference(Path dir, Consumer<Map<String, TensorData>> edit) throws IOException {
        Map<String, TensorData> tensors = referenceTensors();
        edit.accept(tensors);
        return writeModelDir(dir, Files.readString(modelDir().resolve("config.json")), tensors);
    }

    /** Runs {@code action} and returns what it printed to System.err (where slf4j-simple logs). */
    public static String capturingStderr(ThrowingRunnable action) throws Exception {
        PrintStream old = System.err;
        java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        try (PrintStream tee = new PrintStream(new TeeStream(buf, old), true, StandardCharsets.UTF_8)) {
            System.setErr(tee);
            action.run();
        } finally {
            System.setErr(old);
        }
        return buf.toString(StandardCharsets.UTF_8);
    }

    @FunctionalInterface
    public interface ThrowingRunnable {
        void run() throws Exception;
    }

    private static final class TeeStream extends OutputStream {
        private final OutputStream a;
        private final OutputStream b;

        TeeStream(OutputStream a, OutputStream b) {
            this.a = a;
            this.b = b;
        }

        @Override
        public void write(int x) throws IOException {
            a.write(x);
            b.write(x);
        }

        @Override
        public void write(byte[] buf, int off, int len) throws IOException {
            a.write(buf, off, len);
            b.write(buf, off, len);
        }

        @Override
        public void flush() throws IOException {
            a.flush();
            b.flush();
        }
    }
}
