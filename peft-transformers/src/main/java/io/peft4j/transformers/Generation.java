package io.peft4j.transformers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Token generation for causal LMs. */
public final class Generation {
    private Generation() {}

    /**
     * Greedy decoding of one sequence, like {@code generate(do_sample=False)}: the prompt once, then one
     * token per step reusing the model's key/value cache when it returns one (else the whole sequence
     * again). Each step runs in its own {@code NDScope}; only the cache is carried over, so memory does
     * not grow with the number of steps beyond the cache itself.
     *
     * @param eosTokenId stop after emitting this id; null to always produce {@code maxNewTokens}
     * @return the prompt followed by the generated ids
     */
    public static long[] greedy(PreTrainedModel model, long[] prompt, int maxNewTokens, Long eosTokenId) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("prompt must not be empty");
        }
        long[] seq = Arrays.copyOf(prompt, prompt.length + maxNewTokens);
        int len = prompt.length;
        List<NDArray[]> cache = null;
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter()) {
            for (int step = 0; step < maxNewTokens; step++) {
                List<NDArray[]> next;
                long token;
                try (NDScope scope = new NDScope()) {
                    long[] feed = cache == null ? Arrays.copyOf(seq, len) : new long[] {seq[len - 1]};
                    long[] mask = new long[len];
                    Arrays.fill(mask, 1);
                    ModelInput.Builder in = ModelInput.builder()
                            .inputIds(nd.create(feed, new Shape(1, feed.length)))
                            .attentionMask(nd.create(mask, new Shape(1, len)));
                    if (cache != null) {
                        in.pastKeyValues(cache);
                    }
                    ModelOutput out = model.forward(in.build());
                    NDArray logits = out.logits();
                    token = logits.get(0).get(logits.getShape().get(1) - 1).argMax().getLong();
                    next = out.pastKeyValues();
                    if (next != null) {
                        for (NDArray[] kv : next) {
                            for (NDArray a : kv) {
                                NDScope.unregister(a);
                            }
                        }
                    }
                }
                close(cache);
                cache = next;
                seq[len++] = token;
                if (eosTokenId != null && token == eosTokenId) {
                    break;
                }
            }
        } finally {
            close(cache);
        }
        return Arrays.copyOf(seq, len);
    }

    private static void close(List<NDArray[]> cache) {
        if (cache == null) {
            return;
        }
        List<NDArray> all = new ArrayList<>();
        cache.forEach(kv -> all.addAll(Arrays.asList(kv)));
        all.forEach(NDArray::close);
    }
}
