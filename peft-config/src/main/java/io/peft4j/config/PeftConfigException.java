package io.peft4j.config;

/** Invalid or unreadable adapter configuration. Messages name the source (file or config class) and the field. */
public final class PeftConfigException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public PeftConfigException(String message) {
        super(message);
    }

    public PeftConfigException(String message, Throwable cause) {
        super(message, cause);
    }
}
