package io.peft4j.config;

/** Task a PEFT model is wrapped for; JSON value of {@code task_type} is the constant name. */
public enum TaskType {
    SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION
}
