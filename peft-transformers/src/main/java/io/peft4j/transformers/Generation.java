package io.peft4j.transformers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * Token generation for causal LMs, as transformers' {@code generate()} for decoder-only models: greedy or
 * sampled ({@link GenerationConfig}), a batch of prompts of different lengths left-padded, a row stopping at
 * an EOS id and padded afterwards, the key/value cache reused or the whole sequence re-run every step.
 *
 * <p>Works with anything that maps a {@link ModelInput} to a {@link ModelOutput} ({@link LanguageModel}): a
 * {@link PreTrainedModel} such as {@code LlamaForCausalLM}, or a PEFT model through {@code peft::forward}.
 * The model receives {@code input_ids}, an {@code attention_mask} over the past and new positions with zeros on
 * the left padding, {@code position_ids = cumsum(mask) - 1} (1 on padding) as transformers'
 * {@code prepare_inputs_for_generation} builds them, and, with the cache on, the previous step's
 * {@code past_key_values} (only the last token is fed then). A model that returns no cache is re-run on the
 * whole sequence.
 *
 * <p>Each step runs in its own {@link NDScope} under {@link NoGrad}; only the cache is carried over to the next
 * step and closed after it, so native memory does not grow with the number of steps beyond the cache itself.
 */
public final class Generation {
    private Generation() {}

    /** A causal LM forward pass: what {@link Generation} needs from a model. */
    @FunctionalInterface
    public interface LanguageModel {
        ModelOutput forward(ModelInput input);
    }

    /** {@link #generate(LanguageModel, List, GenerationConfig)} for a model. */
    public static GenerationResult generate(PreTrainedModel model, List<long[]> prompts, GenerationConfig config) {
        return generate((LanguageModel) model::forward, prompts, config);
    }

    /** One prompt; returns the prompt followed by the generated ids (EOS included). */
    public static long[] generate(LanguageModel model, long[] prompt, GenerationConfig config) {
        return generate(model, List.of(prompt), config).completion(0);
    }

    /**
     * Greedy decoding of one sequence, like {@code generate(do_sample=False)}.
     *
     * @param eosTokenId stop after emitting this id; null to always produce {@code maxNewTokens}
     * @return the prompt followed by the generated ids
     */
    public static long[] greedy(PreTrainedModel model, long[] prompt, int maxNewTokens, Long eosTokenId) {
        if (maxNewTokens == 0) {
            return prompt.clone();
        }
        GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(maxNewTokens).eosTokenId(eosTokenId).build();
        return generate(model::forward, prompt, cfg);
    }

    /**
     * Generates up to {@code config.maxNewTokens()} tokens after each prompt.
     *
     * @param prompts token ids, one non-empty array per row; lengths may differ (rows are left-padded)
     */
    public static GenerationResult generate(LanguageModel model, List<long[]> prompts, GenerationConfig config) {
        int batch = prompts.size();
        if (batch == 0) {
            throw new IllegalArgumentException("no prompts");
        }
        int[] lens = new int[batch];
        int padded = 0;
        for (int r = 0; r < batch; r++) {
            long[] p = prompts.get(r);
            if (p == null || p.length == 0) {
                throw new IllegalArgumentException("prompt " + r + " is empty");
            }
            for (long id : p) {
                if (id < 0) {
                    throw new IllegalArgumentException("prompt " + r + " has a negative token id " + id);
                }
            }
            lens[r] = p.length;
            padded = Math.max(padded, p.length);
        }
        long pad = config.effectivePadTokenId();
        int maxNew = config.maxNewTokens();
        long[][] seq = new long[batch][padded + maxNew];
        for (int r = 0; r < batch; r++) {
            Arrays.fill(seq[r], pad);
            System.arraycopy(prompts.get(r), 0, seq[r], padded - lens[r], lens[r]);
        }
        long[] eos = config.eosTokenIds().stream().mapToLong(Long::longValue).toArray();
        Random rnd = !config.doSample() ? null : config.seed() != null ? new Random(config.seed()) : new Random();
        boolean[] done = new boolean[batch];
        int[] counts = new int[batch];
        int len = padded;
        int steps = 0;
        List<NDArray[]> cache = null;
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter()) {
            while (steps < maxNew) {
                int from = cache != null ? len - 1 : 0;
                long[] next;
                List<NDArray[]> nextCache = null;
                try (NDScope scope = new NDScope()) {
                    ModelInput.Builder in = stepInput(nd, seq, lens, padded, from, len);
                    if (cache != null) {
                        in.pastKeyValues(cache);
                    }
                    ModelOutput out = model.forward(in.build());
                    next = nextTokens(out.logits(), config, rnd, done);
                    if (config.useCache() && out.pastKeyValues() != null) {
                        nextCache = out.pastKeyValues();
                        for (NDArray[] kv : nextCache) {
                            for (NDArray a : kv) {
                                NDScope.unregister(a);
                            }
                        }
                    }
                }
                closeReplaced(cache, nextCache);
                cache = nextCache;
                boolean allDone = true;
                for (int r = 0; r < batch; r++) {
                    if (done[r]) {
                        seq[r][len] = pad;
                        continue;
                    }
                    seq[r][len] = next[r];
                    counts[r]++;
                    for (long e : eos) {
                        if (next[r] == e) {
                            done[r] = true;
                            break;
                        }
                    }
                    allDone &= done[r];
                }
                len++;
                steps++;
                if (allDone) {
                    break;
                }
            }
        } finally {
            closeReplaced(cache, null);
        }
        for (int r = 0; r < batch; r++) {
            seq[r] = Arrays.copyOf(seq[r], len);
        }
        return new GenerationResult(seq, lens, padded, counts, done);
    }

    /**
     * Ids of columns {@code [from, len)}, the attention mask over {@code [0, len)} and the matching position ids.
     * Row {@code r}'s first {@code padded - lens[r]} columns are padding (mask 0, position 1); every other column
     * is real, generated ones included (transformers extends the mask with ones, finished rows too).
     */
    private static ModelInput.Builder stepInput(NDManager nd, long[][] seq, int[] lens, int padded, int from,
                                                int len) {
        int batch = seq.length;
        int t = len - from;
        long[] ids = new long[batch * t];
        long[] pos = new long[batch * t];
        long[] mask = new long[batch * len];
        for (int r = 0; r < batch; r++) {
            int padLen = padded - lens[r];
            for (int c = padLen; c < len; c++) {
                mask[r * len + c] = 1;
            }
            for (int j = 0; j < t; j++) {
                int c = from + j;
                ids[r * t + j] = seq[r][c];
                pos[r * t + j] = c < padLen ? 1 : c - padLen;
            }
        }
        return ModelInput.builder()
                .inputIds(nd.create(ids, new Shape(batch, t)))
                .attentionMask(nd.create(mask, new Shape(batch, len)))
                .positionIds(nd.create(pos, new Shape(batch, t)));
    }

    /** The next id of every row from the last position's logits; rows already done get no draw. */
    private static long[] nextTokens(NDArray logits, GenerationConfig config, Random rnd, boolean[] done) {
        Shape s = logits.getShape();
        if (s.dimension() != 3 || s.get(0) != done.length) {
            throw new IllegalStateException("expected logits [" + done.length + ", seq, vocab], got " + s);
        }
        NDArray last = logits.get(new NDIndex(":, {}, :", (int) s.get(1) - 1));
        if (!config.doSample()) {
            return last.argMax(1).toLongArray();
        }
        int vocab = (int) s.get(2);
        float[] all = last.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray();
        long[] out = new long[done.length];
        for (int r = 0; r < done.length; r++) {
            if (done[r]) {
                continue;
            }
            float[] row = Arrays.copyOfRange(all, r * vocab, (r + 1) * vocab);
            out[r] = LogitsWarpers.sample(LogitsWarpers.warp(row, config), rnd);
        }
        return out;
    }

    /** Closes the arrays of {@code old} that {@code replacement} does not carry on. */
    private static void closeReplaced(List<NDArray[]> old, List<NDArray[]> replacement) {
        if (old == null) {
            return;
        }
        Set<NDArray> keep = Collections.newSetFromMap(new IdentityHashMap<>());
        if (replacement != null) {
            replacement.forEach(kv -> keep.addAll(Arrays.asList(kv)));
        }
        List<NDArray> all = new ArrayList<>();
        old.forEach(kv -> all.addAll(Arrays.asList(kv)));
        for (NDArray a : all) {
            if (a != null && keep.add(a)) {
                a.close();
            }
        }
    }
}
