package io.peft4j.tuners;

import io.peft4j.config.TargetModules;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static io.peft4j.tuners.TargetMatcher.Match.EXCLUDED;
import static io.peft4j.tuners.TargetMatcher.Match.MATCHED;
import static io.peft4j.tuners.TargetMatcher.Match.UNMATCHED;
import static org.assertj.core.api.Assertions.assertThat;

class TargetMatcherTest {
    static final String Q0 = "model.layers.0.self_attn.q_proj";
    static final String Q1 = "model.layers.1.self_attn.q_proj";

    private static TargetMatcher.Match check(TargetModules t, String key) {
        return TargetMatcher.check(t, null, null, null, null, key);
    }

    @Test
    void listEntriesMatchExactlyOrAsDotSuffixNotAsSubstringOrRegex() {
        TargetModules t = TargetModules.of("q_proj", "self_attn.v_proj");
        assertThat(check(t, Q0)).isEqualTo(MATCHED);
        assertThat(check(t, "model.layers.0.self_attn.v_proj")).isEqualTo(MATCHED);
        assertThat(check(t, "model.layers.0.self_attn.xq_proj")).isEqualTo(UNMATCHED);
        assertThat(check(t, "q_proj")).isEqualTo(MATCHED);
        assertThat(check(TargetModules.of("q.*"), Q0)).isEqualTo(UNMATCHED);
    }

    @Test
    void regexMustMatchTheWholePath() {
        assertThat(check(TargetModules.regex("q_proj"), Q0)).isEqualTo(UNMATCHED);
        assertThat(check(TargetModules.regex(".*\\.(q|v)_proj"), Q0)).isEqualTo(MATCHED);
        assertThat(check(TargetModules.regex(".*layers\\.1.*q_proj"), Q0)).isEqualTo(UNMATCHED);
    }

    @Test
    void layersToTransformUsesFirstNumberedSegmentOrTheNamedPattern() {
        TargetModules t = TargetModules.of("q_proj");
        assertThat(TargetMatcher.check(t, null, null, List.of(1), null, Q0)).isEqualTo(UNMATCHED);
        assertThat(TargetMatcher.check(t, null, null, List.of(1), null, Q1)).isEqualTo(MATCHED);
        assertThat(TargetMatcher.check(t, null, null, List.of(1), List.of("layers"), Q1)).isEqualTo(MATCHED);
        assertThat(TargetMatcher.check(t, null, null, List.of(1), List.of("h"), Q1)).isEqualTo(UNMATCHED);
        // MoE expert indices deeper in the path are ignored: the first numbered segment wins.
        assertThat(TargetMatcher.layerIndex("model.layers.3.mlp.experts.7.w1", null)).isEqualTo(3);
    }

    @Test
    void excludeAndModulesToSaveWinOverTargets() {
        TargetModules t = TargetModules.of("q_proj", "score");
        assertThat(TargetMatcher.check(t, TargetModules.of("layers.0.self_attn.q_proj"), null, null, null, Q0))
                .isEqualTo(EXCLUDED);
        assertThat(TargetMatcher.check(t, TargetModules.of("layers.0.self_attn.q_proj"), null, null, null, Q1))
                .isEqualTo(MATCHED);
        assertThat(TargetMatcher.check(t, null, List.of("score"), null, null, "score")).isEqualTo(EXCLUDED);
    }

    @Test
    void rankPatternFirstMatchOnDotBoundaryWins() {
        Map<String, Integer> p = new LinkedHashMap<>();
        p.put("down_proj", 4);
        p.put("model.layers.1.self_attn.q_proj", 2);
        p.put("q_proj", 16);
        assertThat(TargetMatcher.patternValue(p, "model.layers.1.mlp.down_proj", 8)).isEqualTo(4);
        assertThat(TargetMatcher.patternValue(p, Q1, 8)).isEqualTo(2);
        assertThat(TargetMatcher.patternValue(p, Q0, 8)).isEqualTo(16);
        assertThat(TargetMatcher.patternValue(p, "model.layers.1.self_attn.v_proj", 8)).isEqualTo(8);
        assertThat(TargetMatcher.patternValue(p, "model.layers.1.mlp.xdown_proj", 8)).isEqualTo(8);
    }

    @Test
    void adapterNameIsRemovedOnlyBeforeTheLastSegmentOrAtTheEnd() {
        assertThat(BaseTuner.removeAdapterName("base_model.model.q_proj.lora_A.default.weight", "default"))
                .isEqualTo("base_model.model.q_proj.lora_A.weight");
        assertThat(BaseTuner.removeAdapterName("base_model.model.wte.lora_embedding_A.default", "default"))
                .isEqualTo("base_model.model.wte.lora_embedding_A");
        assertThat(BaseTuner.removeAdapterName("base_model.model.default.q_proj.lora_A.other.weight", "default"))
                .isEqualTo("base_model.model.default.q_proj.lora_A.other.weight");
    }

    @Test
    void longTargetListsCondenseToMinimalSuffixesAsPeft() {
        // peft's docstring example: q_proj/v_proj of the decoder, k_proj of the encoder.
        java.util.List<String> targets = new java.util.ArrayList<>();
        java.util.List<String> others = new java.util.ArrayList<>();
        for (int i = 0; i < 100; i++) {
            targets.add("model.decoder.layers." + i + ".self_attn.q_proj");
            targets.add("model.decoder.layers." + i + ".self_attn.v_proj");
            others.add("model.encoder.layers." + i + ".self_attn.k_proj");
        }
        assertThat(TargetMatcher.minimalTargetModules(targets, others)).containsExactlyInAnyOrder("q_proj", "v_proj");
        // When the encoder also has a q_proj that must not be targeted, the suffix has to say "decoder".
        for (int i = 0; i < 100; i++) {
            others.add("model.encoder.layers." + i + ".self_attn.q_proj");
        }
        java.util.Set<String> minimal = TargetMatcher.minimalTargetModules(targets, others);
        assertThat(minimal).contains("v_proj").doesNotContain("q_proj");
        for (String t : targets) {
            assertThat(minimal.stream().anyMatch(m -> t.equals(m) || t.endsWith("." + m))).as(t).isTrue();
        }
        for (String o : others) {
            assertThat(minimal.stream().anyMatch(m -> o.equals(m) || o.endsWith("." + m))).as(o).isFalse();
        }
        org.assertj.core.api.Assertions.assertThatThrownBy(
                () -> TargetMatcher.minimalTargetModules(java.util.List.of("a.b"), java.util.List.of("a.b")))
                .hasMessageContaining("common elements");
    }
}
