package io.peft4j.transformers;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

/** The warpers on hand-made logits; every expected value is worked out in the comments. */
class LogitsWarpersTest {
    private static final float NEG_INF = Float.NEGATIVE_INFINITY;

    /** Logits whose softmax is exactly {@code probs} (up to float rounding). */
    private static float[] logitsOf(double... probs) {
        float[] out = new float[probs.length];
        for (int i = 0; i < probs.length; i++) {
            out[i] = probs[i] == 0 ? NEG_INF : (float) Math.log(probs[i]);
        }
        return out;
    }

    @Test
    void temperatureDividesTheLogits() {
        assertThat(LogitsWarpers.temperature(new float[] {1f, 2f, -4f}, 2.0)).containsExactly(0.5f, 1f, -2f);
        assertThat(LogitsWarpers.temperature(new float[] {1f, -3f}, 0.5)).containsExactly(2f, -6f);
        assertThatThrownBy(() -> LogitsWarpers.temperature(new float[] {1f}, 0.0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("temperature");
    }

    @Test
    void topKKeepsTheKLargestAndTiesWithTheKth() {
        assertThat(LogitsWarpers.topK(new float[] {1f, 3f, 2f, 0f}, 2)).containsExactly(NEG_INF, 3f, 2f, NEG_INF);
        assertThat(LogitsWarpers.topK(new float[] {1f, 3f, 2f, 0f}, 1)).containsExactly(NEG_INF, 3f, NEG_INF, NEG_INF);
        // The 2nd largest value is 2, held by two entries: both stay (transformers compares with the k-th value).
        assertThat(LogitsWarpers.topK(new float[] {1f, 2f, 2f, 0f}, 2)).containsExactly(NEG_INF, 2f, 2f, NEG_INF);
        // k >= vocab keeps everything.
        assertThat(LogitsWarpers.topK(new float[] {1f, 3f, 2f}, 3)).containsExactly(1f, 3f, 2f);
        assertThat(LogitsWarpers.topK(new float[] {1f, 3f, 2f}, 50)).containsExactly(1f, 3f, 2f);
    }

    @Test
    void topPKeepsTheSmallestSetReachingP() {
        // probs 0.5, 0.3, 0.15, 0.05: most likely first, the running sums are 0.5, 0.8, 0.95, 1.0.
        float[] base = logitsOf(0.5, 0.3, 0.15, 0.05);
        // p = 0.7: 0.5 < 0.7 <= 0.8, so the two most likely tokens.
        assertThat(LogitsWarpers.topP(base.clone(), 0.7)).containsExactly(base[0], base[1], NEG_INF, NEG_INF);
        // p = 0.9: 0.8 < 0.9 <= 0.95, three tokens.
        assertThat(LogitsWarpers.topP(base.clone(), 0.9)).containsExactly(base[0], base[1], base[2], NEG_INF);
        // p = 0.4 <= 0.5: the most likely alone; p = 0 still keeps one token.
        assertThat(LogitsWarpers.topP(base.clone(), 0.4)).containsExactly(base[0], NEG_INF, NEG_INF, NEG_INF);
        assertThat(LogitsWarpers.topP(base.clone(), 0.0)).containsExactly(base[0], NEG_INF, NEG_INF, NEG_INF);
        // p = 1 keeps everything; the order of the vocabulary does not matter.
        assertThat(LogitsWarpers.topP(base.clone(), 1.0)).containsExactly(base);
        float[] shuffled = {base[2], base[0], base[3], base[1]};
        assertThat(LogitsWarpers.topP(shuffled, 0.7)).containsExactly(NEG_INF, base[0], NEG_INF, base[1]);
    }

    @Test
    void warpAppliesTemperatureThenTopKThenTopP() {
        GenerationConfig cfg = GenerationConfig.builder().doSample(true).temperature(0.5).topK(3).topP(0.9).build();
        // temperature 0.5: [2, 1, 0, -1] -> [4, 2, 0, -2]; top-k 3 drops -2; softmax of [4, 2, 0] is
        // e^4, e^2, 1 over 62.99 = 0.8668, 0.1173, 0.0159; top-p 0.9 then drops the 0.0159 (0.8668 < 0.9 <= 0.9841).
        // (top-p before the temperature would keep three: softmax [2, 1, 0, -1] = 0.644, 0.237, 0.087, 0.032.)
        assertThat(LogitsWarpers.warp(new float[] {2f, 1f, 0f, -1f}, cfg)).containsExactly(4f, 2f, NEG_INF, NEG_INF);
        // Neutral settings change nothing.
        GenerationConfig neutral = GenerationConfig.builder().doSample(true).temperature(1.0).topK(0).topP(1.0).build();
        assertThat(LogitsWarpers.warp(new float[] {2f, 1f, 0f, -1f}, neutral)).containsExactly(2f, 1f, 0f, -1f);
    }

    @Test
    void softmaxGivesFilteredEntriesZero() {
        double[] p = LogitsWarpers.softmax(new float[] {0f, 0f, NEG_INF, (float) Math.log(2)});
        assertThat(p[0]).isCloseTo(0.25, within(1e-7));
        assertThat(p[1]).isCloseTo(0.25, within(1e-7));
        assertThat(p[2]).isZero();
        assertThat(p[3]).isCloseTo(0.5, within(1e-7));
        assertThatThrownBy(() -> LogitsWarpers.softmax(new float[] {NEG_INF, NEG_INF}))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void sampleFollowsTheDistributionAndIsReproducible() {
        float[] logits = logitsOf(0.5, 0.25, 0.25, 0);
        int n = 20_000;
        int[] counts = new int[4];
        Random rnd = new Random(3);
        for (int i = 0; i < n; i++) {
            counts[LogitsWarpers.sample(logits, rnd)]++;
        }
        // Binomial standard deviation at n = 20000 is at most 0.0036: 0.02 is more than 5 sigma.
        assertThat(counts[0] / (double) n).isCloseTo(0.5, within(0.02));
        assertThat(counts[1] / (double) n).isCloseTo(0.25, within(0.02));
        assertThat(counts[2] / (double) n).isCloseTo(0.25, within(0.02));
        assertThat(counts[3]).isZero();

        Random a = new Random(99);
        Random b = new Random(99);
        for (int i = 0; i < 100; i++) {
            assertThat(LogitsWarpers.sample(logits, a)).isEqualTo(LogitsWarpers.sample(logits, b));
        }
    }

    @Test
    void argmaxTakesTheFirstOfTies() {
        assertThat(LogitsWarpers.argmax(new float[] {1f, 5f, 5f, 2f})).isEqualTo(1);
        assertThat(LogitsWarpers.argmax(new float[] {NEG_INF, -3f})).isEqualTo(1);
    }
}
