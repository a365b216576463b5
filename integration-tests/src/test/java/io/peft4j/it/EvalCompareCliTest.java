package io.peft4j.it;

import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.it.CliTest.Run;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static io.peft4j.it.CliTest.run;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

/** {@code peft eval}, classification training and {@code peft compare} end to end. */
class EvalCompareCliTest {
    private static long[][] referenceIds() throws Exception {
        JsonNode rows = Reference.JSON.readTree(Reference.root().resolve("inputs.json").toFile()).get("input_ids");
        long[][] ids = new long[rows.size()][];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = new long[rows.get(i).size()];
            for (int j = 0; j < ids[i].length; j++) {
                ids[i][j] = rows.get(i).get(j).asLong();
            }
        }
        return ids;
    }

    private static String idsJson(long[] ids) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < ids.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(ids[i]);
        }
        return sb.append(']').toString();
    }

    /** {@code -log softmax(row)[target]} in double precision. */
    private static double nll(float[] logits, int offset, int n, long target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int k = 0; k < n; k++) {
            max = Math.max(max, logits[offset + k]);
        }
        double sum = 0;
        for (int k = 0; k < n; k++) {
            sum += Math.exp(logits[offset + k] - max);
        }
        return -(logits[offset + (int) target] - max - Math.log(sum));
    }

    /** The loss and perplexity of peft eval equal the cross-entropy of HF peft's own logits on the same rows. */
    @Test
    void evalLossIsTheCrossEntropyOfHfLogits(@TempDir Path tmp) throws Exception {
        long[][] ids = referenceIds();
        Path data = tmp.resolve("rows.jsonl");
        List<String> lines = new ArrayList<>();
        for (long[] row : ids) {
            lines.add("{\"input_ids\": " + idsJson(row) + "}");
        }
        Files.write(data, lines);
        for (String variant : new String[] {"logits", "merged_logits"}) {
            float[] ref = Reference.tensor("llama-lora", variant); // [2, 10, 256]
            double sum = 0;
            int n = 0;
            for (int i = 0; i < ids.length; i++) {
                for (int t = 0; t + 1 < ids[i].length; t++) {
                    sum += nll(ref, (i * ids[i].length + t) * 256, 256, ids[i][t + 1]);
                    n++;
                }
            }
            double expected = sum / n;
            List<String> args = new ArrayList<>(List.of("eval", "--model", CliTest.model(), "--adapter",
                    Reference.adapter("llama-lora").toString(), "--data", data.toString(), "--batch-size", "1", "--json"));
            if (variant.equals("merged_logits")) {
                args.add("--merge");
            }
            Run r = run(args.toArray(String[]::new));
            assertThat(r.code()).as(r.err()).isZero();
            JsonNode m = Reference.JSON.readTree(r.out().trim());
            assertThat(m.get("task").asText()).isEqualTo("CAUSAL_LM");
            assertThat(m.get("tokens").asLong()).isEqualTo(18);
            assertThat(m.get("rows").asLong()).isEqualTo(2);
            assertThat(m.get("loss").asDouble()).as(variant).isCloseTo(expected, within(1e-4));
            assertThat(m.get("perplexity").asDouble()).isCloseTo(Math.exp(expected), within(1e-3 * Math.exp(expected)));
        }
    }

    /** Classification: loss and accuracy of the HF adapter on the HF base, from HF peft's logits. */
    @Test
    void evalAccuracyAndLossMatchHfClassifierLogits(@TempDir Path tmp) throws Exception {
        long[][] ids = referenceIds();
        float[] ref = Reference.tensor("bert-lora", "logits"); // [2, 2]
        long[] labels = {0, 0};
        double loss = 0;
        int correct = 0;
        for (int i = 0; i < 2; i++) {
            loss += nll(ref, 2 * i, 2, labels[i]) / 2;
            correct += (ref[2 * i] >= ref[2 * i + 1] ? 0 : 1) == labels[i] ? 1 : 0;
        }
        Path data = tmp.resolve("rows.jsonl");
        Files.write(data, List.of("{\"input_ids\": " + idsJson(ids[0]) + ", \"label\": 0}",
                "{\"input_ids\": " + idsJson(ids[1]) + ", \"label\": 0}"));
        Run r = run("eval", "--model", Reference.model("bert").toString(), "--adapter",
                Reference.adapter("bert-lora").toString(), "--data", data.toString(), "--json");
        assertThat(r.code()).as(r.err()).isZero();
        JsonNode m = Reference.JSON.readTree(r.out().trim());
        assertThat(m.get("task").asText()).isEqualTo("SEQ_CLS");
        assertThat(m.get("loss").asDouble()).isCloseTo(loss, within(1e-4));
        assertThat(m.get("accuracy").asDouble()).isEqualTo(correct / 2.0);
    }

    private static Path classificationRows(Path tmp) throws Exception {
        // Label 1 rows contain token 200, label 0 rows token 100: separable by one token.
        Path data = tmp.resolve("cls.jsonl");
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            int label = i % 2;
            lines.add("{\"input_ids\": [" + (3 + i) + ", " + (label == 1 ? 200 : 100) + ", " + (40 + i) + ", 7], "
                    + "\"label\": " + label + "}");
        }
        Files.write(data, lines);
        return data;
    }

    /** A SEQ_CLS config trains the head and adapter on labelled rows; eval of the saved adapter agrees. */
    @Test
    void trainClassifiesAndTheSavedAdapterEvaluatesTheSame(@TempDir Path tmp) throws Exception {
        Path data = classificationRows(tmp);
        Path out = tmp.resolve("adapter");
        Run r = run("train", "--model", Reference.model("bert").toString(), "--config",
                Reference.adapter("bert-lora").resolve("adapter_config.json").toString(), "--data", data.toString(),
                "--eval-data", data.toString(), "--steps", "40", "--batch-size", "8", "--scheduler", "constant",
                "--logging-steps", "1", "--lr", "1e-2", "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<Double> losses = CliTest.losses(r.out(), "step \\d+/40 loss=([0-9.]+)");
        assertThat(losses).hasSize(40);
        assertThat(losses.get(39)).isLessThan(losses.get(0) / 2);
        Matcher em = Pattern.compile("eval step 40 eval_loss=([0-9.]+) eval_accuracy=([0-9.]+)").matcher(r.out());
        assertThat(em.find()).as(r.out()).isTrue();
        double accuracy = Double.parseDouble(em.group(2));
        assertThat(accuracy).isEqualTo(1.0);
        Run e = run("eval", "--model", Reference.model("bert").toString(), "--adapter", out.toString(), "--data",
                data.toString(), "--json");
        assertThat(e.code()).as(e.err()).isZero();
        JsonNode m = Reference.JSON.readTree(e.out().trim());
        assertThat(m.get("accuracy").asDouble()).isEqualTo(accuracy);
        assertThat(m.get("loss").asDouble()).isCloseTo(Double.parseDouble(em.group(1)), within(1e-4));

        Path three = tmp.resolve("three.jsonl");
        Files.writeString(three, "{\"input_ids\": [5, 6], \"label\": 2}\n");
        Run bad = run("eval", "--model", Reference.model("bert").toString(), "--task", "seq-cls", "--data",
                three.toString());
        assertThat(bad.code()).isNotZero();
        assertThat(bad.err().trim()).contains("three.jsonl").contains("num_labels 2").contains("config.json");
    }

    /** The rows of an RFC 4180 file (quoted cells may hold commas and doubled quotes; no line breaks here). */
    private static List<String[]> csvRows(Path csv) throws Exception {
        List<String[]> rows = new ArrayList<>();
        for (String line : Files.readAllLines(csv)) {
            List<String> cells = new ArrayList<>();
            StringBuilder cell = new StringBuilder();
            boolean quoted = false;
            for (int i = 0; i < line.length(); i++) {
                char c = line.charAt(i);
                if (quoted && c == '"' && i + 1 < line.length() && line.charAt(i + 1) == '"') {
                    cell.append('"');
                    i++;
                } else if (c == '"') {
                    quoted = !quoted;
                } else if (c == ',' && !quoted) {
                    cells.add(cell.toString());
                    cell.setLength(0);
                } else {
                    cell.append(c);
                }
            }
            cells.add(cell.toString());
            rows.add(cells.toArray(String[]::new));
        }
        return rows;
    }

    private static void assertValidPng(Path png) throws Exception {
        byte[] bytes = Files.readAllBytes(png);
        assertThat(bytes).startsWith(0x89, 'P', 'N', 'G');
        BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img).isNotNull();
        assertThat(img.getWidth()).isGreaterThan(100);
    }

    /** The embedded default: the MLP methods on the demo's task, with a table, CSV, Markdown and a PNG. */
    @Test
    void compareRunsTheMlpMethodsAndWritesTableCsvAndPng(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("cmp");
        Run r = run("compare", "--shipped", "--limit", "1500,400", "--pretrain-batches", "30", "--steps", "3",
                "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<String[]> rows = csvRows(out.resolve("compare.csv"));
        List<String> header = List.of(rows.get(0));
        assertThat(header).startsWith("method", "settings", "lr", "trainable_params").contains("eval_loss",
                "eval_accuracy", "all_classes_accuracy", "peak_rss_mb", "ms_per_step", "train_loss", "adapter_bytes");
        assertThat(rows).hasSize(10);
        List<String> methods = rows.subList(1, 10).stream().map(x -> x[0]).toList();
        assertThat(methods).containsExactly("lora", "qlora", "rslora", "dora", "ia3", "adalora", "pissa", "lora-ga",
                "full-ft");
        int params = header.indexOf("trainable_params");
        int bytes = header.indexOf("adapter_bytes");
        // Hand-computed: LoRA r=8 adds r*(in+out) per layer; IA3 one vector of out (linear1) or in (linear2, 3).
        long lora = 8L * ((784 + 1000) + (1000 + 2000) + (2000 + 10));
        long full = 784L * 1000 + 1000 + 1000L * 2000 + 2000 + 2000L * 10 + 10;
        assertThat(Long.parseLong(rows.get(1)[params])).isEqualTo(lora);
        assertThat(Long.parseLong(rows.get(2)[params])).as("QLoRA trains the same factors").isEqualTo(lora);
        assertThat(Long.parseLong(rows.get(5)[params])).isEqualTo(1000 + 1000 + 2000);
        assertThat(Long.parseLong(rows.get(9)[params])).isEqualTo(full);
        assertThat(Long.parseLong(rows.get(1)[bytes])).isBetween(4 * lora, 4 * lora + 4096);
        assertThat(Files.size(out.resolve("adapters/lora/adapter_model.safetensors")))
                .isEqualTo(Long.parseLong(rows.get(1)[bytes]));
        for (String[] row : rows.subList(1, 10)) {
            for (String col : List.of("train_loss", "eval_loss", "eval_accuracy", "ms_per_step")) {
                assertThat(Double.parseDouble(row[header.indexOf(col)])).as(row[0] + " " + col).isFinite()
                        .isGreaterThanOrEqualTo(0);
            }
        }
        assertThat(r.out()).contains("method").contains("full-ft").contains("wrote compare.md");
        assertThat(Files.readString(out.resolve("compare.md"))).contains("| lora |").contains("| full-ft |");
        assertValidPng(out.resolve("loss.png"));
    }

    /** On a HF model: LoRA, prompt learning and full fine-tuning side by side, evaluated on held-out rows. */
    @Test
    void compareRunsOnAHfModelWithPromptLearningMethods(@TempDir Path tmp) throws Exception {
        Path data = tmp.resolve("d.jsonl");
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            lines.add("{\"input_ids\": [5, 9, 17, 33, " + (60 + i) + ", 5, 9, 17]}");
        }
        Files.write(data, lines);
        Path out = tmp.resolve("cmp");
        Run r = run("compare", "--model", CliTest.model(), "--data", data.toString(), "--steps", "2", "--methods",
                "lora,prompt-tuning,prefix-tuning,full-ft,qlora", "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        assertThat(r.out()).contains("9 training rows, 1 evaluation rows");
        List<String[]> rows = csvRows(out.resolve("compare.csv"));
        List<String> header = List.of(rows.get(0));
        assertThat(rows).hasSize(6);
        assertThat(rows.subList(1, 6).stream().map(x -> x[0])).containsExactly("lora", "prompt-tuning",
                "prefix-tuning", "full-ft", "qlora");
        for (String[] row : rows.subList(1, 6)) {
            double loss = Double.parseDouble(row[header.indexOf("eval_loss")]);
            assertThat(Double.parseDouble(row[header.indexOf("eval_perplexity")])).as(row[0])
                    .isCloseTo(Math.exp(loss), within(2e-3 * Math.exp(loss)));
        }
        // Prompt tuning trains num_virtual_tokens x hidden embeddings: 8 x 64.
        assertThat(Long.parseLong(rows.get(2)[header.indexOf("trainable_params")])).isEqualTo(8 * 64);
        assertThat(Double.parseDouble(rows.get(4)[header.indexOf("trainable_pct")])).isEqualTo(100.0);
        // QLoRA trains the same LoRA factors; its NF4 base changes the loss a little, not a lot.
        assertThat(rows.get(5)[header.indexOf("trainable_params")]).isEqualTo(rows.get(1)[header.indexOf("trainable_params")]);
        double qloraLoss = Double.parseDouble(rows.get(5)[header.indexOf("eval_loss")]);
        double loraLoss = Double.parseDouble(rows.get(1)[header.indexOf("eval_loss")]);
        assertThat(qloraLoss).isNotEqualTo(loraLoss).isCloseTo(loraLoss, within(0.5));
        assertValidPng(out.resolve("loss.png"));

        // A method whose loss diverges is reported and left out; the others still run and are written.
        Path out2 = tmp.resolve("cmp2");
        Run diverged = run("compare", "--model", CliTest.model(), "--data", data.toString(), "--steps", "4",
                "--methods", "lora,full-ft", "--lr", "1e30", "--out", out2.toString());
        assertThat(diverged.code()).as(diverged.err()).isZero();
        assertThat(diverged.out()).containsPattern("lora +failed: loss is NaN");
        List<String[]> kept = csvRows(out2.resolve("compare.csv"));
        assertThat(kept.subList(1, kept.size()).stream().map(x -> x[0])).containsExactly("full-ft");

        Run noData = run("compare", "--model", CliTest.model(), "--out", out.toString());
        assertThat(noData.code()).isNotZero();
        assertThat(noData.err().trim()).contains("--model and --data go together");
        Run unknown = run("compare", "--methods", "lora,prompt-tuning", "--out", out.toString());
        assertThat(unknown.code()).isNotZero();
        assertThat(unknown.err().trim()).contains("prompt-tuning does not apply").doesNotContain("\tat ");
    }
}
