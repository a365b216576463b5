package io.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PeftType;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptLearningConfig;
import io.peft4j.config.TaskType;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.tuners.prompt.PromptLearning;
import io.peft4j.tuners.prompt.PromptLearningEncoder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;

/**
 * The forward of {@code PeftModelForCausalLM} / {@code PeftModelForSequenceClassification} when the active adapter
 * is a prompt-learning method, as peft 0.13.2:
 * <ul>
 *   <li>the attention mask gains {@code num_virtual_tokens} leading ones; {@code position_ids} are dropped (the model
 *       numbers positions itself: after a prefix of length P they start at P, as transformers does);
 *       {@code token_type_ids} are dropped for CAUSAL_LM;</li>
 *   <li>prompt tuning / P-tuning: the encoded virtual tokens {@code [batch, P, token_dim]} go before the input
 *       embeddings (the model gets {@code inputs_embeds} only); causal-LM labels get P leading -100, SEQ_CLS
 *       {@code token_type_ids} P leading zeros. Causal-LM logits therefore cover {@code P + T} positions;</li>
 *   <li>prefix tuning: the encoded prefix becomes per-layer {@code past_key_values} (see
 *       {@link PromptLearning#pastKeyValues}); ids and labels are passed unchanged.</li>
 * </ul>
 * An input that already carries {@code past_key_values} is a later generation step: the virtual tokens (or prefix)
 * are in that cache already, so only the mask is extended, as peft's {@code prepare_inputs_for_generation} does.
 */
final class PromptForward {
    private static final Logger LOG = LoggerFactory.getLogger(PromptForward.class);

    private PromptForward() {}

    /** peft4j runs prompt learning for CAUSAL_LM and SEQ_CLS (the task types with a prompt-aware forward). */
    static void checkTaskType(PeftConfig config) {
        TaskType t = config.taskType();
        if (t != TaskType.CAUSAL_LM && t != TaskType.SEQ_CLS) {
            throw new IllegalArgumentException(config.peftType() + " needs task_type CAUSAL_LM or SEQ_CLS (the virtual "
                    + "tokens are inserted by the task's forward), got " + t);
        }
    }

    static ModelOutput forward(PeftModel peft, ModelInput in) {
        PromptLearningConfig cfg = (PromptLearningConfig) peft.activePeftConfig();
        PreTrainedModel base = (PreTrainedModel) peft.baseModel();
        PromptLearningEncoder encoder = peft.promptEncoder(peft.activeAdapter());
        NDArray ids = in.inputIds();
        NDArray embeds = in.inputsEmbeds();
        long batch = (ids != null ? ids : embeds).getShape().get(0);
        int p = cfg.numVirtualTokens();
        boolean causal = cfg.taskType() == TaskType.CAUSAL_LM;
        NDManager nd = (ids != null ? ids : embeds).getManager();

        ModelInput.Builder b = in.toBuilder();
        NDArray mask = in.attentionMask();
        if (mask != null) {
            b.attentionMask(nd.ones(new Shape(batch, p), mask.getDataType()).concat(mask, 1));
        }
        if (in.positionIds() != null) {
            warnOnce(peft, "Position ids are not supported for parameter efficient tuning. Ignoring position ids.");
            b.positionIds(null);
        }
        if (causal && in.tokenTypeIds() != null) {
            warnOnce(peft, "Token type ids are not supported for parameter efficient tuning. Ignoring token type ids");
            b.tokenTypeIds(null);
        }
        if (cfg.peftType() == PeftType.PREFIX_TUNING) {
            if (in.pastKeyValues() == null) {
                b.pastKeyValues(prefix(encoder, (PrefixTuningConfig) cfg, batch));
            }
            return base.forward(b.build());
        }
        if (in.pastKeyValues() != null) {
            return base.forward(b.build());
        }
        if (!causal && in.tokenTypeIds() != null) {
            NDArray zeros = nd.zeros(new Shape(batch, p), DataType.INT64);
            b.tokenTypeIds(zeros.concat(in.tokenTypeIds().toType(DataType.INT64, false), 1));
        }
        if (embeds == null) {
            embeds = peft.wordEmbeddings().forward(ids);
        }
        if (causal && in.labels() != null) {
            NDArray labels = in.labels();
            NDArray ignore = nd.full(new Shape(batch, p), -100L).toType(labels.getDataType(), false);
            b.labels(ignore.concat(labels, 1));
        }
        NDArray prompts = prompts(encoder, batch).toType(embeds.getDataType(), false);
        return base.forward(b.inputIds(null).inputsEmbeds(prompts.concat(embeds, 1)).build());
    }

    /**
     * peft's {@code get_prompt} for prompt tuning / P-tuning: {@code [batch, P, token_dim]}, the encoder run once on
     * the virtual-token ids and repeated over the batch (an inference encoder's weight is used as is).
     */
    static NDArray prompts(PromptLearningEncoder encoder, long batch) {
        NDArray rows = encoded(encoder, encoder.numTokens());
        return rows.expandDims(0).broadcast(new Shape(batch, rows.getShape().get(0), rows.getShape().get(1)));
    }

    /** peft's {@code get_prompt} for prefix tuning: per-layer {@code {key, value}} of {@code [batch, heads, P, head_dim]}. */
    static List<NDArray[]> prefix(PromptLearningEncoder encoder, PrefixTuningConfig cfg, long batch) {
        NDArray rows = encoded(encoder, cfg.numVirtualTokens());
        NDArray batched = rows.expandDims(0).broadcast(new Shape(batch, rows.getShape().get(0), rows.getShape().get(1)));
        return PromptLearning.pastKeyValues(batched, cfg);
    }

    /** The first {@code n} encoded virtual tokens, {@code [n, width]}. */
    private static NDArray encoded(PromptLearningEncoder encoder, long n) {
        NDArray weight = encoder.embedding().weight().data();
        if (encoder.inferenceOnly()) {
            return n == weight.getShape().get(0) ? weight : weight.get("0:" + n);
        }
        NDArray tokens = weight.getManager().arange(0, (int) n).toType(DataType.INT64, false);
        return encoder.encode(tokens);
    }

    private static void warnOnce(PeftModel peft, String message) {
        if (peft.warned.add(message)) {
            LOG.warn(message);
        }
    }
}
