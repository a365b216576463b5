package io.peft4j.cli;

import ai.djl.ndarray.types.DataType;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.hub.HfTokenizer;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.llama.LlamaConfig;
import io.peft4j.transformers.llama.LlamaForCausalLM;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** {@code peft generate} in-process, on random tiny LLaMA directories. */
class GenerateCommandTest {
    record Run(int code, String out, String err) {
        /** The error output is exactly one line. */
        String oneLineError() {
            assertThat(err.strip().lines()).as(err).hasSize(1);
            return err.strip();
        }
    }

    @TempDir
    static Path tmp;
    /** vocab 50257 (the GPT-2 tokenizer's ids), hidden 16: about 7 MB of weights. */
    static Path bigVocabModel;
    /** vocab 64, no tokenizer. */
    static Path smallModel;
    static Path adapter;

    static synchronized Run run(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = Main.execute(args);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    /** The real GPT-2 tokenizer from ../shared/fixtures, or null. */
    static Path gpt2Tokenizer() {
        String prop = System.getProperty("peft4j.shared");
        Path[] candidates = {prop == null ? null : Paths.get(prop), Paths.get("../shared"), Paths.get("../../shared")};
        for (Path p : candidates) {
            if (p != null && Files.isRegularFile(p.resolve("fixtures/tiny-gpt2/tokenizer.json"))) {
                return p.resolve("fixtures/tiny-gpt2/tokenizer.json");
            }
        }
        return null;
    }

    static LlamaConfig.Builder tiny(int vocab) {
        return LlamaConfig.builder().vocabSize(vocab).hiddenSize(16).intermediateSize(32).numHiddenLayers(2)
                .numAttentionHeads(2).numKeyValueHeads(1).maxPositionEmbeddings(128);
    }

    @BeforeAll
    static void models() throws Exception {
        Torch.manualSeed(5);
        bigVocabModel = tmp.resolve("big");
        try (LlamaForCausalLM m = new LlamaForCausalLM(Torch.newManager(), tiny(50257).initializerRange(0.5).build())) {
            HfModels.savePretrained(m, bigVocabModel);
            adapter = tmp.resolve("adapter");
            PeftModel peft = PeftModel.getPeftModel(m, LoraConfig.builder().r(4).loraAlpha(8)
                    .targetModules("q_proj", "v_proj", "down_proj").taskType(TaskType.CAUSAL_LM).build());
            for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
                if (e.getKey().contains("lora_B")) {
                    e.getValue().setData(m.manager().randomNormal(0f, 0.5f, e.getValue().shape(), DataType.FLOAT32));
                }
            }
            peft.saveAdapter(adapter);
        }
        // GPT-2's special ids; greedy decoding of a random model practically never meets them.
        Files.writeString(bigVocabModel.resolve("generation_config.json"),
                "{\"bos_token_id\": 50256, \"eos_token_id\": 50256, \"max_new_tokens\": 6}");
        smallModel = tmp.resolve("small");
        try (LlamaForCausalLM m = new LlamaForCausalLM(Torch.newManager(), tiny(64).build())) {
            HfModels.savePretrained(m, smallModel);
        }
    }

    /** What the library generates for these prompts: the expected CLI output. */
    static List<String> expected(Path modelDir, GenerationConfig cfg, String... prompts) throws Exception {
        try (HfTokenizer tok = HfTokenizer.load(gpt2Tokenizer());
             LlamaForCausalLM m = LlamaForCausalLM.fromPretrained(modelDir)) {
            List<long[]> ids = java.util.Arrays.stream(prompts).map(tok::encode).toList();
            var r = Generation.generate(m, ids, cfg);
            return java.util.stream.IntStream.range(0, prompts.length)
                    .mapToObj(i -> prompts[i] + tok.decode(r.newTokens(i))).toList();
        }
    }

    @Test
    void greedyBatchPrintsPromptPlusCompletionForEachPrompt() throws Exception {
        Path tok = gpt2Tokenizer();
        assumeTrue(tok != null, "../shared/fixtures/tiny-gpt2 not found; skipping");
        Run r = run("generate", "--model", bigVocabModel.toString(), "--tokenizer", tok.toString(),
                "--prompt", "Hello world", "--prompt", "The quick brown fox jumps");
        assertThat(r.code()).as(r.err()).isZero();
        // max_new_tokens 6 from generation_config.json; 50256 pads and ends rows.
        GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(6).eosTokenId(50256L).build();
        List<String> want = expected(bigVocabModel, cfg, "Hello world", "The quick brown fox jumps");
        assertThat(r.out()).isEqualTo(want.get(0) + "\n\n" + want.get(1) + "\n");
        assertThat(want.get(0)).startsWith("Hello world").hasSizeGreaterThan("Hello world".length());
        assertThat(r.err()).contains("12 new tokens").contains("greedy");

        Run noCache = run("generate", "--model", bigVocabModel.toString(), "--tokenizer", tok.toString(),
                "--prompt", "Hello world", "--prompt", "The quick brown fox jumps", "--no-cache");
        assertThat(noCache.code()).as(noCache.err()).isZero();
        assertThat(noCache.out()).isEqualTo(r.out());
    }

    @Test
    void samplingIsReproducibleWithASeed() {
        Path tok = gpt2Tokenizer();
        assumeTrue(tok != null, "../shared/fixtures/tiny-gpt2 not found; skipping");
        String[] base = {"generate", "--model", bigVocabModel.toString(), "--tokenizer", tok.toString(),
                "--prompt", "Once upon a time", "--max-new-tokens", "8", "--do-sample", "--top-k", "0",
                "--temperature", "1.5"};
        Run a = run(concat(base, "--seed", "7"));
        Run b = run(concat(base, "--seed", "7"));
        Run c = run(concat(base, "--seed", "8"));
        assertThat(a.code()).as(a.err()).isZero();
        assertThat(a.out()).startsWith("Once upon a time").isEqualTo(b.out());
        assertThat(c.out()).startsWith("Once upon a time").isNotEqualTo(a.out());
        assertThat(a.err()).contains("8 new tokens").contains("sampled");
    }

    @Test
    void adapterActiveAndMergedGiveTheSameText() {
        Path tok = gpt2Tokenizer();
        assumeTrue(tok != null, "../shared/fixtures/tiny-gpt2 not found; skipping");
        String[] base = {"generate", "--model", bigVocabModel.toString(), "--tokenizer", tok.toString(),
                "--prompt", "Hello world", "--max-new-tokens", "5"};
        Run plain = run(base);
        Run active = run(concat(base, "--adapter", adapter.toString()));
        Run merged = run(concat(base, "--adapter", adapter.toString(), "--merge"));
        assertThat(active.code()).as(active.err()).isZero();
        assertThat(merged.code()).as(merged.err()).isZero();
        assertThat(merged.out()).isEqualTo(active.out());
        assertThat(active.out()).isNotEqualTo(plain.out());
    }

    @Test
    void tokenizerFromAnotherModelIsRejected() {
        Path tok = gpt2Tokenizer();
        assumeTrue(tok != null, "../shared/fixtures/tiny-gpt2 not found; skipping");
        Run r = run("generate", "--model", smallModel.toString(), "--tokenizer", tok.toString(), "--prompt", "Hello");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.oneLineError()).contains("outside the model's vocabulary").contains("vocab_size 64");
    }

    @Test
    void missingTokenizerIsOneClearLine() {
        Run r = run("generate", "--model", smallModel.toString(), "--prompt", "Hello");
        assertThat(r.code()).isEqualTo(2);
        assertThat(r.oneLineError()).startsWith("peft generate: error:").contains("no tokenizer.json")
                .contains("--tokenizer");
        Run other = run("generate", "--model", smallModel.toString(), "--prompt", "Hello", "--tokenizer",
                tmp.resolve("nowhere.json").toString());
        assertThat(other.code()).isEqualTo(2);
        assertThat(other.oneLineError()).contains("nowhere.json");
    }

    @Test
    void badArgumentsAreOneClearLine() {
        String m = smallModel.toString();
        assertError(run("generate", "--model", m, "--prompt", "x", "--merge"), "--merge needs --adapter");
        assertError(run("generate", "--model", m, "--prompt", "x", "--max-new-tokens", "0"), "--max-new-tokens");
        assertError(run("generate", "--model", m, "--prompt", "x", "--do-sample", "--top-p", "1.5"), "--top-p");
        assertError(run("generate", "--model", m, "--prompt", "x", "--do-sample", "--temperature", "0"),
                "--temperature");
        assertError(run("generate", "--model", m, "--prompt", "x", "--top-k", "-1"), "--top-k");
        assertError(run("generate", "--model", m, "--prompt", "x", "--temperature", "0.5"), "add --do-sample");
        assertError(run("generate", "--model", m, "--prompt", "x", "--do-sample", "--greedy"), "exclude each other");
        assertError(run("generate", "--model", m), "--prompt");
        assertError(run("generate", "--model", m, "--prompt", "x", "--max-new-tokens", "many"), "--max-new-tokens");
        assertError(run("generate", "--model", tmp.resolve("absent").toString(), "--prompt", "x"), "absent");
    }

    @Test
    void optionsOverrideGenerationConfigJson(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("generation_config.json"), "{\"do_sample\": true, \"temperature\": 0.6, "
                + "\"top_p\": 0.9, \"eos_token_id\": [7, 8], \"max_new_tokens\": 11}");
        GenerateCommand fromFile = new GenerateCommand();
        GenerationConfig c = fromFile.generationConfig(dir);
        assertThat(c.doSample()).isTrue();
        assertThat(c.temperature()).isEqualTo(0.6);
        assertThat(c.topP()).isEqualTo(0.9);
        assertThat(c.eosTokenIds()).containsExactly(7L, 8L);
        assertThat(c.maxNewTokens()).isEqualTo(11);
        assertThat(c.useCache()).isTrue();

        GenerateCommand cmd = new GenerateCommand();
        cmd.temperature = 1.3;
        cmd.topK = 4;
        cmd.maxNewTokens = 2;
        cmd.seed = 9;
        cmd.noCache = true;
        GenerationConfig o = cmd.generationConfig(dir);
        assertThat(o.temperature()).isEqualTo(1.3);
        assertThat(o.topK()).isEqualTo(4);
        assertThat(o.topP()).isEqualTo(0.9);
        assertThat(o.maxNewTokens()).isEqualTo(2);
        assertThat(o.seed()).isEqualTo(9L);
        assertThat(o.useCache()).isFalse();

        GenerateCommand greedy = new GenerateCommand();
        greedy.greedy = true;
        assertThat(greedy.generationConfig(dir).doSample()).isFalse();
    }

    private static void assertError(Run r, String needle) {
        assertThat(r.code()).as(r.err()).isEqualTo(2);
        assertThat(r.oneLineError()).startsWith("peft generate:").contains(needle);
        assertThat(r.out()).isEmpty();
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
