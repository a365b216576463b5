package io.peft4j.tuners;

/** Thrown when an adapter config's targets match no module of the model; the message lists what exists. */
public final class NoMatchingTargetException extends IllegalArgumentException {
    public NoMatchingTargetException(String message) {
        super(message);
    }
}
