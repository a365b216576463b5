package io.peft4j.nn;

import ai.djl.pytorch.jni.JniUtils;

/**
 * Disables autograd for the current thread until closed, restoring the previous mode.
 *
 * <p>New threads start with grad mode on in libtorch, so inference and evaluation must open one of these.
 */
public final class NoGrad implements AutoCloseable {
    private final boolean previous;

    private NoGrad() {
        Torch.engine();
        previous = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
    }

    public static NoGrad enter() {
        return new NoGrad();
    }

    @Override
    public void close() {
        JniUtils.setGradMode(previous);
    }
}
