package io.peft4j.transformers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The decoding loop against a model whose output is known: it always predicts {@code (last input id + 1) % 6}.
 * What the loop feeds it (ids, mask, position ids, cache) is recorded and checked step by step.
 */
class GenerationTest {
    static final int VOCAB = 6;

    record Call(long[][] ids, long[][] mask, long[][] positions, boolean hadPast) {}

    /** The fake model; with {@code withCache} it returns a dummy cache of shape [B, 1, past + T, 1]. */
    static final class Counter implements Generation.LanguageModel {
        final boolean withCache;
        final List<Call> calls = new ArrayList<>();

        Counter(boolean withCache) {
            this.withCache = withCache;
        }

        @Override
        public ModelOutput forward(ModelInput in) {
            NDArray ids = in.inputIds();
            NDManager nd = ids.getManager();
            int b = (int) ids.getShape().get(0);
            int t = (int) ids.getShape().get(1);
            long[][] idRows = rows(ids);
            calls.add(new Call(idRows, rows(in.attentionMask()), rows(in.positionIds()), in.pastKeyValues() != null));
            float[] logits = new float[b * t * VOCAB];
            for (int r = 0; r < b; r++) {
                int next = (int) ((idRows[r][t - 1] + 1) % VOCAB);
                logits[(r * t + t - 1) * VOCAB + next] = 1f;
            }
            List<NDArray[]> cache = null;
            if (withCache) {
                long past = in.pastKeyValues() == null ? 0 : in.pastKeyValues().get(0)[0].getShape().get(2);
                NDArray kv = nd.zeros(new Shape(b, 1, past + t, 1));
                cache = List.<NDArray[]>of(new NDArray[] {kv, kv.duplicate()});
            }
            return new ModelOutput(nd.create(logits, new Shape(b, t, VOCAB)), null, null, cache);
        }

        static long[][] rows(NDArray a) {
            long[] flat = a.toLongArray();
            int b = (int) a.getShape().get(0);
            int t = (int) a.getShape().get(1);
            long[][] out = new long[b][];
            for (int r = 0; r < b; r++) {
                out[r] = Arrays.copyOfRange(flat, r * t, (r + 1) * t);
            }
            return out;
        }
    }

    private static GenerationConfig.Builder cfg(int maxNew) {
        return GenerationConfig.builder().maxNewTokens(maxNew).padTokenId(5L);
    }

    @Test
    void leftPaddedBatchWithCacheFeedsMaskPositionsAndOneTokenPerStep() {
        Counter m = new Counter(true);
        GenerationResult r = Generation.generate(m, List.of(new long[] {3, 4}, new long[] {1}), cfg(3).build());
        // Row 0: 4 -> 5 -> 0 -> 1; row 1: 1 -> 2 -> 3 -> 4; row 1 is left-padded with 5.
        assertThat(r.sequences()).isDeepEqualTo(new long[][] {{3, 4, 5, 0, 1}, {5, 1, 2, 3, 4}});
        assertThat(r.steps()).isEqualTo(3);
        assertThat(r.paddedPromptLength()).isEqualTo(2);
        assertThat(r.newTokens(0)).containsExactly(5, 0, 1);
        assertThat(r.completion(1)).containsExactly(1, 2, 3, 4);
        assertThat(r.prompt(1)).containsExactly(1);
        assertThat(r.finished(0)).isFalse();
        assertThat(r.totalNewTokens()).isEqualTo(6);

        assertThat(m.calls).hasSize(3);
        Call c0 = m.calls.get(0);
        assertThat(c0.ids()).isDeepEqualTo(new long[][] {{3, 4}, {5, 1}});
        assertThat(c0.mask()).isDeepEqualTo(new long[][] {{1, 1}, {0, 1}});
        // position_ids = cumsum(mask) - 1, with 1 on the padding (transformers' prepare_inputs_for_generation).
        assertThat(c0.positions()).isDeepEqualTo(new long[][] {{0, 1}, {1, 0}});
        assertThat(c0.hadPast()).isFalse();
        Call c1 = m.calls.get(1);
        assertThat(c1.ids()).isDeepEqualTo(new long[][] {{5}, {2}});
        assertThat(c1.mask()).isDeepEqualTo(new long[][] {{1, 1, 1}, {0, 1, 1}});
        assertThat(c1.positions()).isDeepEqualTo(new long[][] {{2}, {1}});
        assertThat(c1.hadPast()).isTrue();
        Call c2 = m.calls.get(2);
        assertThat(c2.ids()).isDeepEqualTo(new long[][] {{0}, {3}});
        assertThat(c2.mask()).isDeepEqualTo(new long[][] {{1, 1, 1, 1}, {0, 1, 1, 1}});
        assertThat(c2.positions()).isDeepEqualTo(new long[][] {{3}, {2}});
    }

    @Test
    void withoutCacheTheWholeSequenceIsFedEveryStep() {
        for (boolean modelHasCache : new boolean[] {true, false}) {
            Counter m = new Counter(modelHasCache);
            // useCache=false ignores a model's cache; a model without one is re-run on everything anyway.
            GenerationConfig c = cfg(2).useCache(!modelHasCache).build();
            GenerationResult r = Generation.generate(m, List.of(new long[] {3, 4}, new long[] {1}), c);
            assertThat(r.sequences()).isDeepEqualTo(new long[][] {{3, 4, 5, 0}, {5, 1, 2, 3}});
            Call c1 = m.calls.get(1);
            assertThat(c1.ids()).isDeepEqualTo(new long[][] {{3, 4, 5}, {5, 1, 2}});
            assertThat(c1.mask()).isDeepEqualTo(new long[][] {{1, 1, 1}, {0, 1, 1}});
            assertThat(c1.positions()).isDeepEqualTo(new long[][] {{0, 1, 2}, {1, 0, 1}});
            assertThat(m.calls).noneMatch(Call::hadPast);
        }
    }

    @Test
    void eosStopsItsRowWhichIsThenPadded() {
        Counter m = new Counter(true);
        // Row 1 emits the EOS id 2 at the first step; row 0 (4 -> 5 -> 0 -> 1) never does.
        GenerationResult r = Generation.generate(m, List.of(new long[] {3, 4}, new long[] {1}),
                cfg(3).eosTokenId(2L).build());
        assertThat(r.sequences()).isDeepEqualTo(new long[][] {{3, 4, 5, 0, 1}, {5, 1, 2, 5, 5}});
        assertThat(r.newTokens(1)).containsExactly(2);
        assertThat(r.completion(1)).containsExactly(1, 2);
        assertThat(r.finished(1)).isTrue();
        assertThat(r.finished(0)).isFalse();
        // The finished row keeps being fed its pad id, as in transformers.
        assertThat(m.calls.get(2).ids()).isDeepEqualTo(new long[][] {{0}, {5}});
    }

    @Test
    void generationEndsWhenEveryRowHitOneOfTheEosIds() {
        Counter m = new Counter(true);
        // Row 0: 4 -> 5 -> 0 (EOS); row 1: 1 -> 2 -> 3 (EOS). No pad id: the first EOS id pads.
        GenerationResult r = Generation.generate(m, List.of(new long[] {3, 4}, new long[] {1}),
                GenerationConfig.builder().maxNewTokens(10).eosTokenIds(List.of(3L, 0L)).build());
        assertThat(r.steps()).isEqualTo(2);
        assertThat(m.calls).hasSize(2);
        assertThat(r.sequences()).isDeepEqualTo(new long[][] {{3, 4, 5, 0}, {3, 1, 2, 3}});
        assertThat(r.finished(0)).isTrue();
        assertThat(r.finished(1)).isTrue();
    }

    @Test
    void rowFinishingOnTheLastStepCountsAsFinished() {
        GenerationResult r = Generation.generate(new Counter(true), List.of(new long[] {0}),
                cfg(2).eosTokenId(2L).build());
        assertThat(r.sequences()).isDeepEqualTo(new long[][] {{0, 1, 2}});
        assertThat(r.finished(0)).isTrue();
        assertThat(r.newTokens(0)).containsExactly(1, 2);
    }

    @Test
    void singlePromptOverloadReturnsPromptAndNewTokens() {
        assertThat(Generation.generate(new Counter(true), new long[] {4, 2}, cfg(4).build()))
                .containsExactly(4, 2, 3, 4, 5, 0);
    }

    @Test
    void rejectsEmptyInput() {
        Counter m = new Counter(true);
        assertThatThrownBy(() -> Generation.generate(m, List.of(), cfg(2).build()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("no prompts");
        assertThatThrownBy(() -> Generation.generate(m, List.of(new long[] {1}, new long[0]), cfg(2).build()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("prompt 1 is empty");
        assertThatThrownBy(() -> Generation.generate(m, List.of(new long[] {-3}), cfg(2).build()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("negative");
        assertThat(m.calls).isEmpty();
    }
}
