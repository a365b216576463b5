package io.peft4j.nn.data;

/** One classification row: token ids and the class index. */
public record ClassificationExample(long[] inputIds, long label) {}
