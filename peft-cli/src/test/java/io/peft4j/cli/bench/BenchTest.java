package io.peft4j.cli.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchTest {
    private static final Pattern LINE =
            Pattern.compile("^[a-z0-9-]+ median_ms=[0-9.]+ tokens_per_s=[0-9.]+ peak_rss_mb=[0-9.]+( .*)?$");

    private static Bench.Options tiny() {
        return new Bench.Options().preset(32, 1, 4, 64, 64, 2, 8).generation(2, 3, 5).steps(2).warmup(1);
    }

    private static List<String> run(Bench.Options o, List<Bench.Measurement> sink) {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            sink.addAll(Bench.run(o, ps));
        }
        return Arrays.stream(buf.toString(StandardCharsets.UTF_8).split("\n"))
                .filter(l -> !l.isBlank())
                .toList();
    }

    @Test
    void runsAllMeasurementsInOrderWithWellFormedLines() {
        List<Bench.Measurement> ms = new java.util.ArrayList<>();
        List<String> lines = run(tiny(), ms);
        List<String> results = lines.stream().filter(l -> !l.startsWith("#")).toList();
        assertThat(lines).allMatch(l -> l.startsWith("#") || LINE.matcher(l).matches());
        assertThat(results).hasSize(25).allMatch(l -> LINE.matcher(l).matches());
        assertThat(results.stream().map(l -> l.substring(0, l.indexOf(' '))).toList())
                .containsExactly("base-forward", "lora-qv-train", "lora-all-linear-train", "full-ft-train",
                        "lora-unmerged-forward", "lora-merged-forward", "dora-qv-train", "dora-unmerged-forward",
                        "adalora-qv-train", "qlora-train", "qlora-forward",
                        "generate-cached", "generate-uncached",
                        "gpt2-base-forward", "gpt2-lora-train", "gpt2-lora-all-linear-train", "gpt2-full-ft-train",
                        "gpt2-lora-unmerged-forward", "gpt2-lora-merged-forward",
                        "bert-base-forward", "bert-lora-train", "bert-lora-all-linear-train", "bert-full-ft-train",
                        "bert-lora-unmerged-forward", "bert-lora-merged-forward");
        assertThat(ms).extracting(Bench.Measurement::name).containsExactlyElementsOf(Bench.NAMES);
        for (Bench.Measurement m : ms) {
            assertThat(m.medianMs()).isPositive();
            // Forward and train steps process batch x seq = 2 x 8 tokens; a generate call makes 2 x 5 new ones.
            double tokens = m.name().startsWith("generate") ? 2 * 5 : 2 * 8;
            assertThat(m.tokensPerS()).as(m.name()).isCloseTo(tokens / (m.medianMs() / 1000.0),
                    org.assertj.core.data.Percentage.withPercentage(0.01));
            assertThat(m.peakRssMb()).isPositive();
        }
        // Train steps report their forward / backward / optimizer split.
        assertThat(results.get(1)).contains(" fwd_ms=").contains(" bwd_ms=").contains(" opt_ms=");
        // DoRA and AdaLoRA print their cost relative to lora-qv-train of the same run.
        Bench.Measurement lora = ms.get(1);
        for (int i : new int[] {6, 8, 9}) {
            Bench.Measurement variant = ms.get(i);
            assertThat(variant.extra().get("x_lora")).as(variant.name())
                    .isCloseTo(variant.medianMs() / lora.medianMs(), org.assertj.core.data.Offset.offset(1e-9));
            assertThat(results.get(i)).contains(" x_lora=");
        }
        assertThat(results.get(1)).doesNotContain("x_lora");
    }

    @Test
    void profileWritesATraceOfTheTimedStepsPerMeasurement(@TempDir Path dir) throws Exception {
        run(tiny().only("base-forward,lora-qv-train").profileDir(dir), new ArrayList<>());
        for (String name : List.of("base-forward", "lora-qv-train")) {
            JsonNode trace = new ObjectMapper().readTree(dir.resolve(name + ".trace.json").toFile());
            Map<String, Integer> ops = new HashMap<>();
            // libtorch writes the Chrome trace as a bare array of events.
            assertThat(trace.isArray()).as(name).isTrue();
            for (JsonNode e : trace) {
                ops.merge(e.path("name").asText(), 1, Integer::sum);
            }
            // tiny(): 2 timed steps of a 1-layer LLaMA, whose forward runs 7 linears + lm_head (+ LoRA's).
            assertThat(ops.getOrDefault("aten::mm", 0)).as(name).isGreaterThanOrEqualTo(2 * 8);
            assertThat(ops.containsKey("aten::_log_softmax_backward_data")).as(name).isEqualTo(name.endsWith("train"));
        }
    }

    @Test
    void onlySelectsOneMeasurement() {
        List<Bench.Measurement> ms = new java.util.ArrayList<>();
        List<String> results = run(tiny().only("lora-qv-train"), ms).stream()
                .filter(l -> !l.startsWith("#")).toList();
        assertThat(results).hasSize(1);
        assertThat(results.get(0)).startsWith("lora-qv-train median_ms=");
        assertThat(ms).extracting(Bench.Measurement::name).containsExactly("lora-qv-train");
    }

    @Test
    void aListOfMeasurementsPrintsTheirRatio() {
        List<Bench.Measurement> ms = new java.util.ArrayList<>();
        List<String> lines = run(tiny().only("dora-qv-train, lora-qv-train"), ms);
        // run order is the NAMES order, not the order asked for
        assertThat(ms).extracting(Bench.Measurement::name).containsExactly("lora-qv-train", "dora-qv-train");
        double expected = ms.get(1).medianMs() / ms.get(0).medianMs();
        String ratio = lines.stream().filter(l -> l.startsWith("# ratio dora-qv-train / lora-qv-train = ")).findFirst()
                .orElseThrow();
        assertThat(Double.parseDouble(ratio.substring(ratio.lastIndexOf(' ') + 1)))
                .isCloseTo(expected, org.assertj.core.data.Offset.offset(0.0051));
        assertThat(lines).noneMatch(l -> l.startsWith("# ratio full-ft-train"));
    }

    @Test
    void onlyTakesSeveralNamesAndTheVariantPrintsItsRatioToLora() {
        List<Bench.Measurement> ms = new java.util.ArrayList<>();
        List<String> results = run(tiny().only("adalora-qv-train,lora-qv-train"), ms).stream()
                .filter(l -> !l.startsWith("#")).toList();
        assertThat(ms).extracting(Bench.Measurement::name).containsExactly("lora-qv-train", "adalora-qv-train");
        assertThat(results.get(1)).contains(" x_lora=");
        assertThat(ms.get(1).extra().get("x_lora")).isCloseTo(ms.get(1).medianMs() / ms.get(0).medianMs(),
                org.assertj.core.data.Offset.offset(1e-9));
    }

    @Test
    void qloraLinesReportTheBaseWeightBytesNextToFloat32Lora() {
        List<Bench.Measurement> ms = new java.util.ArrayList<>();
        List<String> lines = run(tiny().only("lora-qv-train,qlora-train,qlora-forward,base-forward"), ms);
        assertThat(ms).extracting(Bench.Measurement::name)
                .containsExactly("base-forward", "lora-qv-train", "qlora-train", "qlora-forward");
        // float32 Linear weights: 4 bytes each
        assertThat(ms.get(1).extra().get("base_weight_bytes_per_param")).isEqualTo(4.0);
        // tiny preset, 32 x 32 and 32 x 64 layers in NF4 with double quant: 0.5 byte + 1 absmax byte per 64
        // + per layer a nested absmax float, the 256-float nested map and the 16-float code book
        // (4 x 1024 + 3 x 2048 = 10,240 weights in 7 layers): (5120 + 160 + 7 x (4 + 1024 + 64)) / 10240
        double expected = (5120 + 160 + 7 * (4 + 1024 + 64)) / 10240.0;
        for (int i : new int[] {2, 3}) {
            assertThat(ms.get(i).extra().get("base_weight_bytes_per_param")).as(ms.get(i).name())
                    .isCloseTo(expected, org.assertj.core.data.Offset.offset(1e-9));
            assertThat(ms.get(i).extra().get("base_weights_mb")).isLessThan(ms.get(1).extra().get("base_weights_mb"));
        }
        List<String> results = lines.stream().filter(l -> !l.startsWith("#")).toList();
        assertThat(results.get(2)).startsWith("qlora-train ").contains(" base_weight_bytes_per_param=")
                .contains(" x_lora=");
        assertThat(lines).anyMatch(l -> l.startsWith("# ratio qlora-train / lora-qv-train = "))
                .anyMatch(l -> l.startsWith("# ratio qlora-forward / base-forward = "));
    }

    @Test
    void onlySelectsAGenerationMeasurement() {
        for (String name : List.of("generate-cached", "generate-uncached")) {
            List<Bench.Measurement> ms = new java.util.ArrayList<>();
            List<String> lines = run(tiny().only(name), ms);
            assertThat(lines.get(1)).contains("gen_batch=2 gen_prompt=3 gen_new_tokens=5");
            List<String> results = lines.stream().filter(l -> !l.startsWith("#")).toList();
            assertThat(results).hasSize(1);
            assertThat(results.get(0)).startsWith(name + " median_ms=").contains(" x_floor=");
            assertThat(ms).extracting(Bench.Measurement::name).containsExactly(name);
        }
    }

    @Test
    void generationFlopsByHand() {
        // Tiny preset: per token 1 layer x (q,o 2 x 32 x 32 + k,v 2 x 32 x 32 + MLP 3 x 32 x 64) + lm_head 32 x 64
        // = 4096 + 6144 + 2048 = 12,288 MACs; head_dim 8, 4 heads, 2 prompts of 3 tokens, 5 new tokens.
        Bench.Options o = tiny();
        // Cached: 3 + 1 + 1 + 1 + 1 = 7 query tokens per row -> linear 2 x 2 x 7 x 12288 = 344,064;
        // attention 1 x 2 x 2 x 2 x 4 x 8 x (3 x 3 + 1 x 4 + 1 x 5 + 1 x 6 + 1 x 7) = 256 x 31 = 7,936.
        assertThat(Bench.stepGflop(o, Bench.GENERATE_CACHED) * 1e9).isCloseTo(352_000,
                org.assertj.core.data.Offset.offset(1e-3));
        // Uncached: 3 + 4 + 5 + 6 + 7 = 25 tokens per row -> linear 2 x 2 x 25 x 12288 = 1,228,800;
        // attention 256 x (9 + 16 + 25 + 36 + 49) = 256 x 135 = 34,560.
        assertThat(Bench.stepGflop(o, Bench.GENERATE_UNCACHED) * 1e9).isCloseTo(1_263_360,
                org.assertj.core.data.Offset.offset(1e-3));
    }

    @Test
    void rejectsUnknownMeasurement() {
        assertThatThrownBy(() -> Bench.run(tiny().only("nope"), new PrintStream(new ByteArrayOutputStream())))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("nope");
    }

    @Test
    void mergedForwardComputesWhatUnmergedDoes() {
        float[][] l = Bench.unmergedAndMergedLogits(tiny());
        assertThat(l[0]).hasSize(2 * 8 * 64);
        assertThat(l[1]).hasSize(l[0].length);
        float maxDiff = 0;
        for (int i = 0; i < l[0].length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(l[0][i] - l[1][i]));
        }
        assertThat(maxDiff).isLessThan(1e-4f);
    }

    @Test
    void medianOfEvenAndOddCounts() {
        assertThat(Bench.median(new double[] {3, 1, 2})).isEqualTo(2.0);
        assertThat(Bench.median(new double[] {4, 1, 3, 2})).isEqualTo(2.5);
    }

    @Test
    void stepFlopsOfTheReferencePreset() {
        // By hand: per token 4 layers x (q,k,v,o 4 x 512^2 + MLP 3 x 512 x 1376) + lm_head 512 x 8000 = 16,744,448
        // MACs; x 2 x 512 tokens = 17.146 GFLOP; attention 4 x 2 x 2 x (4 x 8 x 128 x 128 x 64) = 0.537 GFLOP.
        Bench.Options o = new Bench.Options();
        assertThat(Bench.stepGflop(o, Bench.BASE_FORWARD)).isCloseTo(17.683, org.assertj.core.data.Offset.offset(0.001));
        assertThat(Bench.stepGflop(o, Bench.LORA_QV_TRAIN)).isCloseTo(35.903, org.assertj.core.data.Offset.offset(0.001));
        assertThat(Bench.stepGflop(o, Bench.FULL_FT_TRAIN)).isCloseTo(53.050, org.assertj.core.data.Offset.offset(0.001));
    }

    @Test
    void gpt2AndBertCasesCountTheirOwnFlops() {
        Bench.Options o = new Bench.Options();
        // By hand, GPT-2 at hidden 512, 4 layers, vocab 8000: per token 4 x 12 x 512^2 + 512 x 8000 = 16,678,912
        // MACs -> x 2 x 512 tokens = 17.079 GFLOP, + attention 0.537 = 17.616 GFLOP forward.
        assertThat(Bench.stepGflop(o, "gpt2-base-forward")).isCloseTo(17.616, org.assertj.core.data.Offset.offset(0.001));
        // BERT has no lm_head: 4 x 12 x 512^2 x 2 x 512 = 12.885 GFLOP + 0.537 = 13.422 forward; LoRA train 2L + 3A.
        assertThat(Bench.stepGflop(o, "bert-base-forward")).isCloseTo(13.422, org.assertj.core.data.Offset.offset(0.001));
        assertThat(Bench.stepGflop(o, "bert-lora-train")).isCloseTo(27.381, org.assertj.core.data.Offset.offset(0.001));
        assertThat(Bench.NAMES).contains("gpt2-lora-train", "bert-lora-merged-forward", "lora-qv-train");
    }
}
