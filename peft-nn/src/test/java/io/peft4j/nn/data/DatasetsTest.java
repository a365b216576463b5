package io.peft4j.nn.data;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class DatasetsTest {
    /** One id per character (its code point); with special tokens a BOS id 1 comes first. */
    static final Tokenizer CHARS = (text, special) -> {
        long[] cps = text.codePoints().asLongStream().toArray();
        if (!special) {
            return cps;
        }
        long[] out = new long[cps.length + 1];
        out[0] = 1;
        System.arraycopy(cps, 0, out, 1, cps.length);
        return out;
    };

    static String decode(long[] ids, int from, int to) {
        StringBuilder sb = new StringBuilder();
        for (int i = from; i < to; i++) {
            sb.appendCodePoint((int) ids[i]);
        }
        return sb.toString();
    }

    @Test
    void causalLmRowsOfEveryShape(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("d.jsonl");
        Files.writeString(f, """
                {"text": "abc"}
                {"prompt": "Q?", "completion": "ok"}

                {"instruction": "Add", "input": "1+1", "output": "2"}
                {"instruction": "Greet", "output": "hi"}
                {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}
                """);
        List<CausalLmExample> rows = Datasets.causalLm(f, CHARS, 512, 2L);
        assertThat(rows).hasSize(5);
        assertThat(rows.get(0).inputIds()).containsExactly(1, 'a', 'b', 'c');
        assertThat(rows.get(0).labels()).containsExactly(1, 'a', 'b', 'c');
        // prompt (with BOS) masked, completion + EOS trained
        assertThat(rows.get(1).inputIds()).containsExactly(1, 'Q', '?', 'o', 'k', 2);
        assertThat(rows.get(1).labels()).containsExactly(-100, -100, -100, 'o', 'k', 2);
        assertThat(rows.get(1).lossTokens()).isEqualTo(3);
        CausalLmExample alpaca = rows.get(2);
        String prompt = "Below is an instruction that describes a task, paired with an input that provides further "
                + "context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd\n\n"
                + "### Input:\n1+1\n\n### Response:\n";
        assertThat(decode(alpaca.inputIds(), 1, 1 + prompt.length())).isEqualTo(prompt);
        assertThat(alpaca.labels()[prompt.length()]).isEqualTo(-100);
        assertThat(alpaca.labels()[prompt.length() + 1]).isEqualTo('2');
        String noInput = "Below is an instruction that describes a task. Write a response that appropriately completes "
                + "the request.\n\n### Instruction:\nGreet\n\n### Response:\n";
        assertThat(decode(rows.get(3).inputIds(), 1, 1 + noInput.length())).isEqualTo(noInput);
        assertThat(rows.get(4).labels()).containsExactly(-100, 6, 7);
    }

    @Test
    void truncationAndRowsWithNothingToPredict(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("d.jsonl");
        Files.writeString(f, """
                {"text": "abcdefgh"}
                {"prompt": "a long prompt", "completion": "x"}
                {"text": ""}
                """);
        List<CausalLmExample> rows = Datasets.causalLm(f, CHARS, 4, null);
        // the prompt/completion row is cut before its completion and the empty text has no next token: both dropped
        assertThat(rows).hasSize(1);
        assertThat(rows.get(0).inputIds()).containsExactly(1, 'a', 'b', 'c');
    }

    @Test
    void theAlpacaTemplateReproducesTheReferenceRows() throws Exception {
        Path f = Path.of("../../shared/fixtures/tokenizer-assets/alpaca_tiny.json");
        if (!Files.exists(f)) {
            f = Path.of("../shared/fixtures/tokenizer-assets/alpaca_tiny.json");
        }
        Assumptions.assumeTrue(Files.exists(f), "../shared/fixtures/tokenizer-assets/alpaca_tiny.json is absent");
        List<CausalLmExample> rows = Datasets.causalLm(f, CHARS, 100_000, null);
        var json = new com.fasterxml.jackson.databind.ObjectMapper().readTree(f.toFile());
        assertThat(rows).hasSize(json.size());
        for (int i = 0; i < json.size(); i++) {
            long[] ids = rows.get(i).inputIds();
            assertThat(decode(ids, 1, ids.length)).as("row %d", i).isEqualTo(json.get(i).get("text").asText());
        }
    }

    @Test
    void malformedRowsNameTheirLine(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, "{\"text\": \"ok\"}\n\n{\"text\": \n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessage(f + ":3: not valid JSON");
        Files.writeString(f, "{\"text\": \"ok\"}\n{\"question\": \"?\"}\n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessageStartingWith(f + ":2: expected")
                .hasMessageContaining("[question]");
        Files.writeString(f, "{\"prompt\": \"p\"}\n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessageContaining(f + ":1: a prompt/completion row");
        Files.writeString(f, "{\"input_ids\": [1, 2], \"labels\": [1]}\n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessageContaining(":1: \"labels\" has 1");
        Files.writeString(f, "{\"input_ids\": [1, \"x\"]}\n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessageContaining(":1: input_ids[1] is not an integer");
        Files.writeString(f, "{\"text\": 5}\n");
        assertThatThrownBy(() -> Datasets.causalLm(f, CHARS, 16, null)).hasMessageContaining(":1: \"text\" must be a string");
        assertThatThrownBy(() -> Datasets.causalLm(dir.resolve("none.jsonl"), CHARS, 16, null)).hasMessageContaining("no such data file");
    }

    @Test
    void classificationFromJsonLinesAndCsv(@TempDir Path dir) throws Exception {
        Path j = dir.resolve("c.jsonl");
        Files.writeString(j, "{\"text\": \"good\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": \"neg\"}\n");
        Datasets.ClassificationData d = Datasets.classification(j, CHARS, 8);
        assertThat(d.labelNames()).containsExactly("neg", "pos");
        assertThat(d.rows()).extracting(ClassificationExample::label).containsExactly(1L, 0L);
        assertThat(d.rows().get(0).inputIds()).containsExactly(1, 'g', 'o', 'o', 'd');

        Path c = dir.resolve("c.csv");
        Files.writeString(c, "label,text\r\n2,\"a, \"\"quoted\"\"\nline\"\r\n0,plain\r\n");
        Datasets.ClassificationData cd = Datasets.classification(c, CHARS, 64);
        assertThat(cd.labelNames()).isNull();
        assertThat(cd.rows()).extracting(ClassificationExample::label).containsExactly(2L, 0L);
        assertThat(decode(cd.rows().get(0).inputIds(), 1, cd.rows().get(0).inputIds().length))
                .isEqualTo("a, \"quoted\"\nline");

        Files.writeString(c, "sentence,label\nx,1\n");
        assertThatThrownBy(() -> Datasets.classification(c, CHARS, 8)).hasMessageContaining(c + ":1: the CSV header");
        Files.writeString(c, "text,label\nx,1\n\"open,2\n");
        assertThatThrownBy(() -> Datasets.classification(c, CHARS, 8)).hasMessageContaining(c + ":3: a quoted field is never closed");
        Files.writeString(c, "text,label\nx,1,extra\n");
        assertThatThrownBy(() -> Datasets.classification(c, CHARS, 8)).hasMessageContaining("record 2 has 3 fields");
        Files.writeString(j, "{\"text\": \"x\"}\n");
        assertThatThrownBy(() -> Datasets.classification(j, CHARS, 8)).hasMessageContaining(j + ":1: a classification row needs");
    }

    @Test
    void batchesArePaddedOnTheRightWithMasksAndIgnoredLabels() {
        try (NDManager m = Torch.newManager()) {
            ModelInput in = Datasets.causalLmBatch(m, List.of(
                    new CausalLmExample(new long[] {5, 6, 7}, new long[] {-100, 6, 7}),
                    new CausalLmExample(new long[] {8}, new long[] {8})), 0);
            assertThat(in.inputIds().toLongArray()).containsExactly(5, 6, 7, 8, 0, 0);
            assertThat(in.attentionMask().toLongArray()).containsExactly(1, 1, 1, 1, 0, 0);
            assertThat(in.labels().toLongArray()).containsExactly(-100, 6, 7, 8, -100, -100);
            ModelInput c = Datasets.classificationBatch(m, List.of(new ClassificationExample(new long[] {3}, 1),
                    new ClassificationExample(new long[] {4, 5}, 0)), 9);
            assertThat(c.inputIds().toLongArray()).containsExactly(3, 9, 4, 5);
            assertThat(c.attentionMask().toLongArray()).containsExactly(1, 0, 1, 1);
            assertThat(c.labels().toLongArray()).containsExactly(1, 0);
        }
    }
}
