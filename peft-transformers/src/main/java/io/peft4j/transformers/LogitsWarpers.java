package io.peft4j.transformers;

import java.util.Arrays;
import java.util.Random;

/**
 * The sampling steps of transformers' {@code generate}, on one row of next-token logits in Java: temperature,
 * top-k and top-p warpers (in that order, as {@code _get_logits_processor} chains them; filtered entries become
 * {@code -inf}), then a draw from the softmax. Each warper edits the row in place and returns it.
 */
public final class LogitsWarpers {
    private LogitsWarpers() {}

    /** HF's order with {@code config}'s settings; a warper at its neutral value (1.0, 0, 1.0) is skipped. */
    public static float[] warp(float[] logits, GenerationConfig config) {
        if (config.temperature() != 1.0) {
            temperature(logits, config.temperature());
        }
        if (config.topK() > 0) {
            topK(logits, config.topK());
        }
        if (config.topP() < 1.0) {
            topP(logits, config.topP());
        }
        return logits;
    }

    /** {@code logits / t} ({@code TemperatureLogitsWarper}). */
    public static float[] temperature(float[] logits, double t) {
        if (!(t > 0)) {
            throw new IllegalArgumentException("temperature must be strictly positive, got " + t);
        }
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) (logits[i] / t);
        }
        return logits;
    }

    /**
     * Keeps the {@code k} largest logits ({@code TopKLogitsWarper}): everything below the k-th largest value
     * becomes {@code -inf}, so values tied with it survive too. {@code k >= vocab} changes nothing.
     */
    public static float[] topK(float[] logits, int k) {
        int keep = Math.max(k, 1);
        if (keep >= logits.length) {
            return logits;
        }
        float[] sorted = logits.clone();
        Arrays.sort(sorted);
        float kth = sorted[sorted.length - keep];
        for (int i = 0; i < logits.length; i++) {
            if (logits[i] < kth) {
                logits[i] = Float.NEGATIVE_INFINITY;
            }
        }
        return logits;
    }

    /**
     * Nucleus filtering ({@code TopPLogitsWarper}): keeps the most likely tokens whose probabilities add up to
     * at least {@code p}, and always the most likely one. As in transformers, the probabilities are sorted
     * ascending and a token is dropped while the cumulative sum up to and including it is {@code <= 1 - p};
     * tokens tied with the least likely kept one are kept as well. {@code p >= 1} changes nothing.
     */
    public static float[] topP(float[] logits, double p) {
        if (p >= 1.0) {
            return logits;
        }
        float[] sorted = logits.clone();
        Arrays.sort(sorted);
        double[] probs = softmax(sorted);
        double cum = 0;
        int firstKept = sorted.length - 1;
        for (int i = 0; i < sorted.length - 1; i++) {
            cum += probs[i];
            if (!(cum <= 1 - p)) {
                firstKept = i;
                break;
            }
        }
        float threshold = sorted[firstKept];
        for (int i = 0; i < logits.length; i++) {
            if (logits[i] < threshold) {
                logits[i] = Float.NEGATIVE_INFINITY;
            }
        }
        return logits;
    }

    /** Softmax in double precision; {@code -inf} entries get probability 0. */
    public static double[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        if (max == Double.NEGATIVE_INFINITY || Double.isNaN(max)) {
            throw new IllegalArgumentException("logits have no finite maximum (all -inf or NaN)");
        }
        double[] out = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < logits.length; i++) {
            out[i] = Math.exp(logits[i] - max);
            sum += out[i];
        }
        for (int i = 0; i < out.length; i++) {
            out[i] /= sum;
        }
        return out;
    }

    /** Draws an index from {@code softmax(logits)} ({@code torch.multinomial(probs, 1)}) with {@code rnd}. */
    public static int sample(float[] logits, Random rnd) {
        double[] probs = softmax(logits);
        double u = rnd.nextDouble();
        double cum = 0;
        int last = -1;
        for (int i = 0; i < probs.length; i++) {
            if (probs[i] > 0) {
                cum += probs[i];
                last = i;
                if (u < cum) {
                    return i;
                }
            }
        }
        return last; // rounding left the sum just below u
    }

    /** Index of the largest logit (the first on ties). */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }
}
