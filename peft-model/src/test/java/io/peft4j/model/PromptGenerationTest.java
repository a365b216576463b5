package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptEncoderReparameterizationType;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.transformers.Generation;
import io.peft4j.transformers.GenerationConfig;
import io.peft4j.transformers.gpt2.Gpt2Config;
import io.peft4j.transformers.gpt2.Gpt2LMHeadModel;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Generation with a prompt or a prefix on tiny LLaMA and GPT-2 models: with the key/value cache it equals the
 * uncached run and a hand-written greedy loop that builds peft's inputs itself (virtual-token embeddings before the
 * word embeddings, or per-layer key/value prefixes), as HF's {@code generate} does.
 */
class PromptGenerationTest {
    static final int P = 4;
    static final int NEW = 8;

    static Stream<Arguments> cases() {
        List<PeftConfig> configs = List.of(
                PromptTuningConfig.builder().numVirtualTokens(P).taskType(TaskType.CAUSAL_LM).build(),
                PromptEncoderConfig.builder().numVirtualTokens(P).encoderHiddenSize(16).taskType(TaskType.CAUSAL_LM).build(),
                PromptEncoderConfig.builder().numVirtualTokens(P).encoderHiddenSize(8).encoderNumLayers(1)
                        .encoderReparameterizationType(PromptEncoderReparameterizationType.LSTM)
                        .taskType(TaskType.CAUSAL_LM).build(),
                PrefixTuningConfig.builder().numVirtualTokens(P).taskType(TaskType.CAUSAL_LM).build(),
                PrefixTuningConfig.builder().numVirtualTokens(P).prefixProjection(true).encoderHiddenSize(16)
                        .taskType(TaskType.CAUSAL_LM).build());
        List<Arguments> out = new ArrayList<>();
        for (String arch : List.of("llama", "gpt2")) {
            for (PeftConfig c : configs) {
                out.add(Arguments.of(arch, c));
            }
        }
        return out.stream();
    }

    static PreTrainedModel tiny(String arch) {
        if (arch.equals("llama")) {
            return PeftGenerationTest.tinyLlama();
        }
        Gpt2Config cfg = Gpt2Config.builder().vocabSize(64).nEmbd(32).nLayer(2).nHead(4).nPositions(64)
                .initializerRange(0.2).build();
        Gpt2LMHeadModel m = new Gpt2LMHeadModel(Torch.newManager(), cfg);
        m.eval();
        return m;
    }

    static GenerationConfig greedy(boolean cache) {
        return GenerationConfig.builder().maxNewTokens(NEW).padTokenId(0L).useCache(cache).build();
    }

    @ParameterizedTest
    @MethodSource("cases")
    void cachedGenerationEqualsUncachedAndAHandWrittenLoop(String arch, PeftConfig config) {
        Torch.manualSeed(31);
        try (PreTrainedModel model = tiny(arch)) {
            long[] prompt = {5, 17, 42, 3, 8, 60, 11};
            long[] base = Generation.generate(model, List.of(prompt), greedy(true)).sequences()[0];
            PeftModel peft = PeftModel.getPeftModel(model, config);
            peft.eval();
            long[] cached = peft.generate(List.of(prompt), greedy(true)).sequences()[0];
            long[] uncached = peft.generate(List.of(prompt), greedy(false)).sequences()[0];
            assertThat(cached).hasSize(prompt.length + NEW).startsWith(prompt);
            assertThat(uncached).as("without the cache").isEqualTo(cached);
            assertThat(manualGreedy(peft, model, prompt)).as("hand-written loop").isEqualTo(cached);
            assertThat(cached).as("the virtual tokens change the output").isNotEqualTo(base);

            // A left-padded batch: the cache and the full re-run agree row by row.
            List<long[]> batch = List.of(prompt, new long[] {9, 2, 33});
            long[][] withCache = peft.generate(batch, greedy(true)).sequences();
            assertThat(peft.generate(batch, greedy(false)).sequences()).isDeepEqualTo(withCache);
        }
    }

    /** Greedy decoding that builds peft's model inputs itself from the encoder's output. */
    private static long[] manualGreedy(PeftModel peft, PreTrainedModel model, long[] prompt) {
        PeftConfig cfg = peft.activePeftConfig();
        boolean prefix = cfg instanceof PrefixTuningConfig;
        long[] seq = prompt.clone();
        try (NoGrad ng = NoGrad.enter()) {
            for (int step = 0; step < NEW; step++) {
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    NDManager nd = model.manager();
                    NDArray encoded = peft.promptEmbeddingToSave("default"); // [P, width]: the encoder's output
                    NDArray ids = nd.create(seq, new Shape(1, seq.length));
                    ModelInput.Builder in = ModelInput.builder().attentionMask(nd.ones(new Shape(1, P + seq.length)));
                    if (prefix) {
                        PrefixTuningConfig pc = (PrefixTuningConfig) cfg;
                        int heads = pc.numAttentionHeads();
                        int hd = pc.tokenDim() / heads;
                        NDArray kv = encoded.reshape(1, P, pc.numLayers() * 2L, heads, hd).transpose(2, 0, 3, 1, 4);
                        List<NDArray[]> past = new ArrayList<>();
                        for (int l = 0; l < pc.numLayers(); l++) {
                            past.add(new NDArray[] {kv.get(2L * l), kv.get(2L * l + 1)});
                        }
                        in.inputIds(ids).pastKeyValues(past);
                    } else {
                        NDArray words = model.inputEmbeddings().forward(ids);
                        in.inputsEmbeds(encoded.expandDims(0).concat(words, 1));
                    }
                    NDArray logits = model.forward(in.build()).logits();
                    long next = logits.get(0).get(logits.getShape().get(1) - 1).argMax().toType(DataType.INT64, false)
                            .getLong();
                    encoded.close();
                    long[] grown = java.util.Arrays.copyOf(seq, seq.length + 1);
                    grown[seq.length] = next;
                    seq = grown;
                }
            }
        }
        return seq;
    }
}
