package io.peft4j.transformers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.nn.F;
import io.peft4j.nn.model.ModelConfig;

/**
 * What transformers' {@code *ForSequenceClassification} heads share: the number of labels and the
 * {@code problem_type} read from {@code config.json}, and the loss chosen from them.
 */
public final class ClassifierHead {
    private ClassifierHead() {}

    /** transformers' {@code problem_type} values. */
    public enum ProblemType {
        REGRESSION("regression"),
        SINGLE_LABEL_CLASSIFICATION("single_label_classification"),
        MULTI_LABEL_CLASSIFICATION("multi_label_classification");

        private final String hfName;

        ProblemType(String hfName) {
            this.hfName = hfName;
        }

        public String hfName() {
            return hfName;
        }
    }

    /**
     * {@code num_labels} as {@code PretrainedConfig} derives it: the size of {@code id2label} when present
     * (saved configs carry only that), else {@code num_labels}, else 2.
     */
    public static int numLabels(ModelConfig c) {
        JsonNode id2label = c.json().get("id2label");
        int n = id2label != null && id2label.isObject() && id2label.size() > 0 ? id2label.size()
                : c.getInt("num_labels", 2);
        if (n <= 0) {
            throw new IllegalArgumentException(c.source() + ": num_labels must be positive, got " + n);
        }
        return n;
    }

    /** {@code problem_type}, or null when absent (then inferred per call, as transformers does). */
    public static ProblemType problemType(ModelConfig c) {
        if (!c.has("problem_type")) {
            return null;
        }
        String v = c.getString("problem_type", null);
        for (ProblemType p : ProblemType.values()) {
            if (p.hfName.equals(v)) {
                return p;
            }
        }
        throw new IllegalArgumentException(c.source() + ": problem_type '" + v + "' is not one of regression, "
                + "single_label_classification, multi_label_classification");
    }

    /** Sets {@code num_labels} the way transformers' setter does: {@code id2label}/{@code label2id} = LABEL_i. */
    public static void putNumLabels(ObjectNode json, int n) {
        ObjectNode id2label = json.putObject("id2label");
        ObjectNode label2id = json.putObject("label2id");
        for (int i = 0; i < n; i++) {
            id2label.put(Integer.toString(i), "LABEL_" + i);
            label2id.put("LABEL_" + i, i);
        }
        json.remove("num_labels");
    }

    /**
     * The loss of transformers' sequence-classification heads. Without a configured problem type it is
     * regression for one label, single-label classification for integer labels and multi-label otherwise.
     *
     * @param logits {@code [batch, numLabels]}
     * @param labels {@code [batch]} class ids (-100 ignored), {@code [batch]} or {@code [batch, numLabels]}
     *               regression targets, or {@code [batch, numLabels]} 0/1 targets for multi-label
     */
    public static NDArray loss(NDArray logits, NDArray labels, int numLabels, ProblemType configured) {
        ProblemType type = configured != null ? configured
                : numLabels == 1 ? ProblemType.REGRESSION
                : isInteger(labels.getDataType()) ? ProblemType.SINGLE_LABEL_CLASSIFICATION
                : ProblemType.MULTI_LABEL_CLASSIFICATION;
        return switch (type) {
            case REGRESSION -> {
                NDArray target = labels.toType(logits.getDataType(), false);
                // transformers squeezes both sides when num_labels == 1: [B, 1] logits against [B] labels.
                NDArray diff = numLabels == 1 ? logits.reshape(-1).sub(target.reshape(-1)) : logits.sub(target);
                yield diff.mul(diff).mean();
            }
            case SINGLE_LABEL_CLASSIFICATION -> F.crossEntropy(logits.reshape(-1, numLabels), labels.reshape(-1), -100);
            case MULTI_LABEL_CLASSIFICATION -> {
                // BCEWithLogits in its stable form: max(x, 0) - x*y + log(1 + exp(-|x|)).
                NDArray y = labels.toType(logits.getDataType(), false);
                NDArray softplus = F.add(logits.abs().neg().exp(), 1f).log();
                yield F.relu(logits).sub(logits.mul(y)).add(softplus).mean();
            }
        };
    }

    private static boolean isInteger(DataType t) {
        // transformers checks for torch.long or torch.int only.
        return t == DataType.INT64 || t == DataType.INT32;
    }
}
