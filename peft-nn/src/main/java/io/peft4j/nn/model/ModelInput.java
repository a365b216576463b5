package io.peft4j.nn.model;

import ai.djl.ndarray.NDArray;

import java.util.List;

/**
 * Arguments of a model forward pass, as in transformers' {@code forward(input_ids=..., ...)}. Either
 * {@code inputIds} or {@code inputsEmbeds} must be set.
 */
public final class ModelInput {
    private final NDArray inputIds;
    private final NDArray inputsEmbeds;
    private final NDArray attentionMask;
    private final NDArray positionIds;
    private final NDArray tokenTypeIds;
    private final NDArray labels;
    private final List<NDArray[]> pastKeyValues;
    private final boolean outputHiddenStates;

    private ModelInput(Builder b) {
        if ((b.inputIds == null) == (b.inputsEmbeds == null)) {
            throw new IllegalArgumentException("exactly one of input_ids and inputs_embeds must be given");
        }
        this.inputIds = b.inputIds;
        this.inputsEmbeds = b.inputsEmbeds;
        this.attentionMask = b.attentionMask;
        this.positionIds = b.positionIds;
        this.tokenTypeIds = b.tokenTypeIds;
        this.labels = b.labels;
        this.pastKeyValues = b.pastKeyValues;
        this.outputHiddenStates = b.outputHiddenStates;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Shorthand for ids only. */
    public static ModelInput of(NDArray inputIds) {
        return builder().inputIds(inputIds).build();
    }

    public NDArray inputIds() {
        return inputIds;
    }

    public NDArray inputsEmbeds() {
        return inputsEmbeds;
    }

    /** {@code [batch, seq]} with 1 for real tokens and 0 for padding, or null. */
    public NDArray attentionMask() {
        return attentionMask;
    }

    public NDArray positionIds() {
        return positionIds;
    }

    /** {@code [batch, seq]} segment ids (BERT's sentence A = 0 / B = 1), or null for all zeros. */
    public NDArray tokenTypeIds() {
        return tokenTypeIds;
    }

    public NDArray labels() {
        return labels;
    }

    /** Per layer {@code {key, value}}, each {@code [batch, kv_heads, past, head_dim]}; null when none. */
    public List<NDArray[]> pastKeyValues() {
        return pastKeyValues;
    }

    public boolean outputHiddenStates() {
        return outputHiddenStates;
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.inputIds = inputIds;
        b.inputsEmbeds = inputsEmbeds;
        b.attentionMask = attentionMask;
        b.positionIds = positionIds;
        b.tokenTypeIds = tokenTypeIds;
        b.labels = labels;
        b.pastKeyValues = pastKeyValues;
        b.outputHiddenStates = outputHiddenStates;
        return b;
    }

    /** Builder for {@link ModelInput}. */
    public static final class Builder {
        private NDArray inputIds;
        private NDArray inputsEmbeds;
        private NDArray attentionMask;
        private NDArray positionIds;
        private NDArray tokenTypeIds;
        private NDArray labels;
        private List<NDArray[]> pastKeyValues;
        private boolean outputHiddenStates;

        public Builder inputIds(NDArray v) {
            inputIds = v;
            return this;
        }

        public Builder inputsEmbeds(NDArray v) {
            inputsEmbeds = v;
            return this;
        }

        public Builder attentionMask(NDArray v) {
            attentionMask = v;
            return this;
        }

        public Builder positionIds(NDArray v) {
            positionIds = v;
            return this;
        }

        public Builder tokenTypeIds(NDArray v) {
            tokenTypeIds = v;
            return this;
        }

        public Builder labels(NDArray v) {
            labels = v;
            return this;
        }

        public Builder pastKeyValues(List<NDArray[]> v) {
            pastKeyValues = v;
            return this;
        }

        public Builder outputHiddenStates(boolean v) {
            outputHiddenStates = v;
            return this;
        }

        public ModelInput build() {
            return new ModelInput(this);
        }
    }
}
