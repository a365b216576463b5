package io.peft4j.nn.safetensors;

import java.io.IOException;

/**
 * A safetensors file (or sharded index) is malformed, inconsistent, or cannot be written.
 *
 * <p>Messages always start with the file name and, where a single tensor is at fault, name that
 * tensor, so a user can find the offending entry without a debugger.
 */
public final class SafetensorsException extends IOException {
  private static final long serialVersionUID = 1L;

  public SafetensorsException(String message) {
    super(message);
  }

  public SafetensorsException(String message, Throwable cause) {
    super(message, cause);
  }
}
