package io.peft4j.transformers.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.GenerationResult;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static io.peft4j.transformers.llama.LlamaTestSupport.inputIds;
import static io.peft4j.transformers.llama.LlamaTestSupport.modelDir;
import static org.assertj.core.api.Assertions.assertThat;

/** Generation with the tiny transformers-saved LLaMA (vocab 256). */
class LlamaGenerationTest {
    static LlamaForCausalLM model;
    static long[][] ids;

    @BeforeAll
    static void load() throws Exception {
        model = LlamaForCausalLM.fromPretrained(modelDir());
        ids = inputIds();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** Prompts of lengths 10, 4 and 6: rows 1 and 2 are left-padded in a batch. */
    static List<long[]> prompts() {
        return List.of(ids[0], Arrays.copyOf(ids[1], 4), Arrays.copyOfRange(ids[0], 3, 9));
    }

    static GenerationConfig.Builder greedy(int maxNew) {
        return GenerationConfig.builder().maxNewTokens(maxNew).padTokenId(0L);
    }

    @Test
    void greedyWithCacheEqualsArgmaxOfFullRecompute() throws Exception {
        long[] prompt = Arrays.copyOf(ids[0], 5);
        try (NDManager nd = Torch.newManager(); NoGrad ng = NoGrad.enter()) {
            long[] cached = Generation.greedy(model, prompt, 8, null);
            assertThat(cached).hasSize(13).startsWith(prompt);
            long[] seq = prompt;
            for (int i = 0; i < 8; i++) {
                try (NDScope s = new NDScope()) {
                    NDArray logits = model.forward(ModelInput.of(nd.create(seq, new Shape(1, seq.length)))).logits();
                    long next = logits.get(0).get(seq.length - 1).argMax().getLong();
                    seq = Arrays.copyOf(seq, seq.length + 1);
                    seq[seq.length - 1] = next;
                }
            }
            assertThat(cached).containsExactly(seq);
            long[] stopped = Generation.greedy(model, prompt, 8, cached[5]);
            assertThat(stopped).containsExactly(Arrays.copyOf(cached, 6));
        }
    }

    @Test
    void cachedAndUncachedGreedyAgreeForOnePrompt() {
        GenerationResult cached = Generation.generate(model, List.of(ids[1]), greedy(12).build());
        GenerationResult uncached = Generation.generate(model, List.of(ids[1]), greedy(12).useCache(false).build());
        assertThat(cached.steps()).isEqualTo(12);
        assertThat(cached.completion(0)).startsWith(ids[1]).hasSize(22);
        assertThat(uncached.sequences()).isDeepEqualTo(cached.sequences());
    }

    @Test
    void leftPaddedBatchRowsEqualEachPromptAlone() {
        List<long[]> prompts = prompts();
        GenerationResult cached = Generation.generate(model, prompts, greedy(10).build());
        GenerationResult uncached = Generation.generate(model, prompts, greedy(10).useCache(false).build());
        assertThat(uncached.sequences()).isDeepEqualTo(cached.sequences());
        long[][] seqs = cached.sequences();
        assertThat(seqs).hasDimensions(3, 20);
        // Row 1 (4 tokens) sits after 6 pad ids, row 2 (6 tokens) after 4.
        assertThat(Arrays.copyOf(seqs[1], 6)).containsOnly(0L);
        assertThat(Arrays.copyOfRange(seqs[1], 6, 10)).containsExactly(prompts.get(1));
        for (int r = 0; r < prompts.size(); r++) {
            long[] alone = Generation.generate(model, List.of(prompts.get(r)), greedy(10).build()).completion(0);
            assertThat(cached.completion(r)).as("row %d", r).containsExactly(alone);
        }
        // Not a degenerate model: the rows continue differently.
        assertThat(cached.newTokens(0)).isNotEqualTo(cached.newTokens(1));
    }

    @Test
    void topKOneSamplingIsGreedy() {
        GenerationResult greedy = Generation.generate(model, prompts(), greedy(8).build());
        GenerationResult sampled = Generation.generate(model, prompts(),
                greedy(8).doSample(true).topK(1).temperature(0.7).seed(5L).build());
        assertThat(sampled.sequences()).isDeepEqualTo(greedy.sequences());
    }

    @Test
    void samplingIsReproducibleBySeed() {
        GenerationConfig.Builder c = greedy(16).doSample(true).topK(0);
        long[][] a = Generation.generate(model, prompts(), c.seed(1L).build()).sequences();
        long[][] b = Generation.generate(model, prompts(), c.seed(1L).build()).sequences();
        long[][] other = Generation.generate(model, prompts(), c.seed(2L).build()).sequences();
        long[][] greedy = Generation.generate(model, prompts(), greedy(16).build()).sequences();
        assertThat(b).isDeepEqualTo(a);
        // 48 draws from a near-uniform distribution over 256 ids: equal outcomes are practically impossible.
        assertThat(other).isNotEqualTo(a);
        assertThat(a).isNotEqualTo(greedy);
        // Sampled cached and uncached runs see the same distributions, so the same seed gives the same ids.
        long[][] uncached = Generation.generate(model, prompts(), c.seed(1L).useCache(false).build()).sequences();
        assertThat(uncached).isDeepEqualTo(a);
    }

    @Test
    void eosStopsARowAndPadsIt() {
        List<long[]> prompts = List.of(ids[0], ids[1]);
        GenerationResult free = Generation.generate(model, prompts, greedy(8).build());
        // The EOS: a token row 0 emits that row 1 never does within these steps.
        long[] row0 = free.newTokens(0);
        long[] row1 = free.newTokens(1);
        int stopAt = -1;
        for (int i = 1; i < row0.length && stopAt < 0; i++) {
            long t = row0[i];
            if (Arrays.stream(row1).noneMatch(x -> x == t) && Arrays.stream(row0, 0, i).noneMatch(x -> x == t)) {
                stopAt = i;
            }
        }
        assertThat(stopAt).as("a token only row 0 generates, first seen after step 0").isPositive();
        long eos = row0[stopAt];
        long pad = 255;
        GenerationResult r = Generation.generate(model, prompts,
                greedy(8).eosTokenId(eos).padTokenId(pad).build());
        assertThat(r.newTokens(0)).containsExactly(Arrays.copyOf(row0, stopAt + 1));
        assertThat(r.finished(0)).isTrue();
        assertThat(r.newTokens(1)).containsExactly(row1);
        assertThat(r.finished(1)).isFalse();
        long[] seq0 = r.sequences()[0];
        assertThat(Arrays.copyOfRange(seq0, 10 + stopAt + 1, seq0.length)).hasSize(8 - stopAt - 1).containsOnly(pad);

        // Alone, the row stops the whole generation.
        GenerationResult alone = Generation.generate(model, List.of(ids[0]),
                greedy(8).eosTokenId(eos).padTokenId(pad).build());
        assertThat(alone.steps()).isEqualTo(stopAt + 1);
        assertThat(alone.completion(0)).containsExactly(r.completion(0));
    }

    @Test
    void liveArraysDoNotGrowWithTheSteps() {
        for (boolean useCache : new boolean[] {true, false}) {
            List<Integer> inputSide = new ArrayList<>();
            List<Integer> modelSide = new ArrayList<>();
            int modelBefore = model.manager().getManagedArrays().size();
            Generation.generate(in -> {
                inputSide.add(in.inputIds().getManager().getManagedArrays().size());
                modelSide.add(model.manager().getManagedArrays().size());
                return model.forward(in);
            }, prompts(), greedy(12).useCache(useCache).build());
            assertThat(inputSide).hasSize(12);
            // From the second step on, what is alive at each call is the step's inputs plus the cache.
            assertThat(inputSide.subList(1, 12)).as("cache=%s", useCache).containsOnly(inputSide.get(1));
            assertThat(modelSide.subList(1, 12)).as("cache=%s", useCache).containsOnly(modelSide.get(1));
            assertThat(model.manager().getManagedArrays()).hasSize(modelBefore);
        }
    }
}
