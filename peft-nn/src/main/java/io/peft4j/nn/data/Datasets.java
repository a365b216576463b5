package io.peft4j.nn.data;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.peft4j.nn.model.ModelInput;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Training data readers and batch collation.
 *
 * <p>Causal-LM rows, one JSON object per line ({@code .jsonl}) or a JSON array file, each one of:
 * <ul>
 *   <li>{@code {"text": ...}}: loss on every token;</li>
 *   <li>{@code {"prompt": ..., "completion": ...}}: loss on the completion only;</li>
 *   <li>{@code {"instruction": ..., "input": ..., "output": ...}} (Alpaca; {@code input} optional): the Stanford
 *       Alpaca prompt template, loss on the output only;</li>
 *   <li>{@code {"input_ids": [...]}} (optionally {@code "labels": [...]}): already tokenised.</li>
 * </ul>
 * The prompt is encoded with the tokenizer's special tokens, the completion without, then {@code eos} is appended
 * when given; rows are truncated to {@code maxLength} tokens. Classification rows are {@code {"text", "label"}} in
 * JSON lines or a CSV file with a header ({@code text,label}). A malformed row fails with the file and line.
 */
public final class Datasets {
    public static final long IGNORE_INDEX = -100;
    /** Stanford Alpaca's template for a row with an input. */
    public static final String ALPACA_WITH_INPUT = "Below is an instruction that describes a task, paired with an input "
            + "that provides further context. Write a response that appropriately completes the request.\n\n"
            + "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
    /** Stanford Alpaca's template for a row without an input. */
    public static final String ALPACA_NO_INPUT = "Below is an instruction that describes a task. Write a response that "
            + "appropriately completes the request.\n\n### Instruction:\n%s\n\n### Response:\n";
    private static final ObjectMapper JSON = new ObjectMapper();

    private Datasets() {}

    /** Classification rows and the label names ({@code null} when the file gave integer labels). */
    public record ClassificationData(List<ClassificationExample> rows, List<String> labelNames) {}

    /** One JSON row and where it came from ({@code file:line} or {@code file: row N}). */
    private record Row(JsonNode node, String where) {}

    private static List<Row> jsonRows(Path file) throws IOException {
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + ": no such data file");
        }
        String content = Files.readString(file, StandardCharsets.UTF_8);
        List<Row> out = new ArrayList<>();
        if (content.stripLeading().startsWith("[")) {
            JsonNode arr;
            try {
                arr = JSON.readTree(content);
            } catch (IOException e) {
                throw new IOException(file + ": not a valid JSON array (" + e.getMessage().lines().findFirst().orElse("") + ")");
            }
            for (int i = 0; i < arr.size(); i++) {
                out.add(new Row(arr.get(i), file + ": row " + (i + 1)));
            }
            return out;
        }
        String[] lines = content.split("\n", -1);
        for (int i = 0; i < lines.length; i++) {
            if (lines[i].isBlank()) {
                continue;
            }
            try {
                out.add(new Row(JSON.readTree(lines[i]), file + ":" + (i + 1)));
            } catch (IOException e) {
                throw new IOException(file + ":" + (i + 1) + ": not valid JSON");
            }
        }
        return out;
    }

    private static String text(Row r, String field) throws IOException {
        JsonNode v = r.node().get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isTextual()) {
            throw new IOException(r.where() + ": \"" + field + "\" must be a string");
        }
        return v.asText();
    }

    /** Reads causal-LM rows; rows left with no token to predict are skipped. */
    public static List<CausalLmExample> causalLm(Path file, Tokenizer tokenizer, int maxLength, Long eos)
            throws IOException {
        if (maxLength < 2) {
            throw new IllegalArgumentException("maxLength must be >= 2, got " + maxLength);
        }
        List<CausalLmExample> out = new ArrayList<>();
        for (Row r : jsonRows(file)) {
            if (!r.node().isObject()) {
                throw new IOException(r.where() + ": expected a JSON object");
            }
            CausalLmExample ex = causalLmRow(r, tokenizer, eos);
            if (ex.inputIds().length > maxLength) {
                ex = new CausalLmExample(Arrays.copyOf(ex.inputIds(), maxLength), Arrays.copyOf(ex.labels(), maxLength));
            }
            // The first label is never predicted (labels are shifted), so a row needs a loss token after it.
            long[] l = ex.labels();
            boolean trainable = false;
            for (int i = 1; i < l.length; i++) {
                trainable |= l[i] != IGNORE_INDEX;
            }
            if (trainable) {
                out.add(ex);
            }
        }
        if (out.isEmpty()) {
            throw new IOException(file + ": no row with a token to train on");
        }
        return out;
    }

    private static CausalLmExample causalLmRow(Row r, Tokenizer tok, Long eos) throws IOException {
        JsonNode n = r.node();
        if (n.has("input_ids")) {
            long[] ids = longs(r, "input_ids");
            long[] labels = n.has("labels") ? longs(r, "labels") : ids.clone();
            if (labels.length != ids.length) {
                throw new IOException(r.where() + ": \"labels\" has " + labels.length + " entries but \"input_ids\" has "
                        + ids.length);
            }
            return new CausalLmExample(ids, labels);
        }
        String prompt;
        String completion;
        if (n.has("text")) {
            String t = text(r, "text");
            long[] ids = tok.encode(t == null ? "" : t, true);
            return new CausalLmExample(ids, ids.clone());
        } else if (n.has("prompt") || n.has("completion")) {
            prompt = text(r, "prompt");
            completion = text(r, "completion");
            if (prompt == null || completion == null) {
                throw new IOException(r.where() + ": a prompt/completion row needs both \"prompt\" and \"completion\"");
            }
        } else if (n.has("instruction")) {
            String instruction = text(r, "instruction");
            String input = text(r, "input");
            completion = text(r, "output");
            if (instruction == null || completion == null) {
                throw new IOException(r.where() + ": an instruction row needs \"instruction\" and \"output\"");
            }
            prompt = input == null || input.isEmpty() ? String.format(ALPACA_NO_INPUT, instruction)
                    : String.format(ALPACA_WITH_INPUT, instruction, input);
        } else {
            throw new IOException(r.where() + ": expected \"text\", \"prompt\"+\"completion\", \"instruction\"+\"output\" "
                    + "or \"input_ids\"; found " + fieldNames(n));
        }
        long[] p = tok.encode(prompt, true);
        long[] c = tok.encode(completion, false);
        int total = p.length + c.length + (eos != null ? 1 : 0);
        long[] ids = Arrays.copyOf(p, total);
        long[] labels = new long[total];
        Arrays.fill(labels, 0, p.length, IGNORE_INDEX);
        System.arraycopy(c, 0, ids, p.length, c.length);
        System.arraycopy(c, 0, labels, p.length, c.length);
        if (eos != null) {
            ids[total - 1] = eos;
            labels[total - 1] = eos;
        }
        return new CausalLmExample(ids, labels);
    }

    private static List<String> fieldNames(JsonNode n) {
        List<String> names = new ArrayList<>();
        n.fieldNames().forEachRemaining(names::add);
        return names;
    }

    private static long[] longs(Row r, String field) throws IOException {
        JsonNode arr = r.node().get(field);
        if (arr == null || !arr.isArray() || arr.isEmpty()) {
            throw new IOException(r.where() + ": \"" + field + "\" must be a non-empty array of integers");
        }
        long[] out = new long[arr.size()];
        for (int i = 0; i < out.length; i++) {
            if (!arr.get(i).isIntegralNumber()) {
                throw new IOException(r.where() + ": " + field + "[" + i + "] is not an integer");
            }
            out[i] = arr.get(i).asLong();
        }
        return out;
    }

    /**
     * Reads classification rows from JSON lines / a JSON array ({@code {"text", "label"}}, or pre-tokenised
     * {@code {"input_ids", "label"}}) or, for a {@code .csv}
     * file, CSV with a header naming {@code text} and {@code label}. Integer labels are used as they are; string
     * labels are numbered in sorted order and their names returned.
     */
    public static ClassificationData classification(Path file, Tokenizer tokenizer, int maxLength) throws IOException {
        List<String[]> raw = new ArrayList<>(); // {where, text, label}
        List<Boolean> integral = new ArrayList<>();
        Map<Integer, long[]> pretokenised = new HashMap<>(); // raw index -> input_ids of a pre-tokenised row
        if (file.getFileName().toString().toLowerCase(java.util.Locale.ROOT).endsWith(".csv")) {
            if (!Files.isRegularFile(file)) {
                throw new IOException(file + ": no such data file");
            }
            List<List<String>> records = Csv.parse(Files.readString(file, StandardCharsets.UTF_8), file);
            if (records.isEmpty()) {
                throw new IOException(file + ": empty CSV file");
            }
            List<String> header = records.get(0);
            int ti = header.indexOf("text");
            int li = header.indexOf("label");
            if (ti < 0 || li < 0) {
                throw new IOException(file + ":1: the CSV header must name \"text\" and \"label\" columns, found " + header);
            }
            for (int i = 1; i < records.size(); i++) {
                List<String> rec = records.get(i);
                if (rec.size() == 1 && rec.get(0).isEmpty()) {
                    continue;
                }
                if (rec.size() != header.size()) {
                    throw new IOException(file + ": record " + (i + 1) + " has " + rec.size() + " fields, the header has "
                            + header.size());
                }
                String label = rec.get(li).trim();
                raw.add(new String[] {file + ": record " + (i + 1), rec.get(ti), label});
                integral.add(label.matches("-?\\d+"));
            }
        } else {
            for (Row r : jsonRows(file)) {
                if (!r.node().isObject()) {
                    throw new IOException(r.where() + ": expected a JSON object");
                }
                boolean hasIds = r.node().has("input_ids");
                String t = hasIds ? "" : text(r, "text");
                JsonNode label = r.node().get("label");
                if (t == null || label == null || label.isNull()) {
                    throw new IOException(r.where() + ": a classification row needs \"text\" (or \"input_ids\") and "
                            + "\"label\"");
                }
                if (hasIds) {
                    pretokenised.put(raw.size(), longs(r, "input_ids"));
                }
                if (!label.isIntegralNumber() && !label.isTextual()) {
                    throw new IOException(r.where() + ": \"label\" must be an integer or a string");
                }
                raw.add(new String[] {r.where(), t, label.asText()});
                integral.add(label.isIntegralNumber());
            }
        }
        if (raw.isEmpty()) {
            throw new IOException(file + ": no rows");
        }
        boolean allInts = integral.stream().allMatch(b -> b);
        List<String> names = null;
        Map<String, Integer> index = new LinkedHashMap<>();
        if (!allInts) {
            names = new ArrayList<>(new TreeSet<>(raw.stream().map(x -> x[2]).toList()));
            for (int i = 0; i < names.size(); i++) {
                index.put(names.get(i), i);
            }
        }
        List<ClassificationExample> rows = new ArrayList<>();
        for (int i = 0; i < raw.size(); i++) {
            String[] x = raw.get(i);
            long label = allInts ? Long.parseLong(x[2]) : index.get(x[2]);
            if (label < 0) {
                throw new IOException(x[0] + ": negative label " + label);
            }
            long[] ids = pretokenised.containsKey(i) ? pretokenised.get(i) : tokenizer.encode(x[1], true);
            rows.add(new ClassificationExample(ids.length > maxLength ? Arrays.copyOf(ids, maxLength) : ids, label));
        }
        return new ClassificationData(rows, names);
    }

    /** Right-padded {@code input_ids}, the attention mask and labels ({@code -100} on padding). */
    public static ModelInput causalLmBatch(NDManager m, List<CausalLmExample> batch, long padId) {
        int t = batch.stream().mapToInt(e -> e.inputIds().length).max().orElse(1);
        long[] ids = new long[batch.size() * t];
        long[] mask = new long[ids.length];
        long[] labels = new long[ids.length];
        Arrays.fill(ids, padId);
        Arrays.fill(labels, IGNORE_INDEX);
        for (int i = 0; i < batch.size(); i++) {
            CausalLmExample e = batch.get(i);
            System.arraycopy(e.inputIds(), 0, ids, i * t, e.inputIds().length);
            System.arraycopy(e.labels(), 0, labels, i * t, e.labels().length);
            Arrays.fill(mask, i * t, i * t + e.inputIds().length, 1L);
        }
        Shape s = new Shape(batch.size(), t);
        return ModelInput.builder().inputIds(m.create(ids, s)).attentionMask(m.create(mask, s))
                .labels(m.create(labels, s)).build();
    }

    /** Right-padded {@code input_ids}, the attention mask and one label per row. */
    public static ModelInput classificationBatch(NDManager m, List<ClassificationExample> batch, long padId) {
        int t = batch.stream().mapToInt(e -> e.inputIds().length).max().orElse(1);
        long[] ids = new long[batch.size() * t];
        long[] mask = new long[ids.length];
        long[] labels = new long[batch.size()];
        Arrays.fill(ids, padId);
        for (int i = 0; i < batch.size(); i++) {
            ClassificationExample e = batch.get(i);
            System.arraycopy(e.inputIds(), 0, ids, i * t, e.inputIds().length);
            Arrays.fill(mask, i * t, i * t + e.inputIds().length, 1L);
            labels[i] = e.label();
        }
        Shape s = new Shape(batch.size(), t);
        return ModelInput.builder().inputIds(m.create(ids, s)).attentionMask(m.create(mask, s))
                .labels(m.create(labels)).build();
    }
}
