package io.peft4j.nn;

import ai.djl.ndarray.NDArray;

import java.util.List;

/**
 * Children named {@code "0"}, {@code "1"}, ... run one after the other, as {@code torch.nn.Sequential}; parameter
 * paths read {@code 0.weight}, {@code 2.bias}, ... (parameter-free steps such as activations keep their index).
 */
public final class Sequential extends Module {
    private int size;

    public Sequential(Module... modules) {
        for (Module m : modules) {
            add(m);
        }
    }

    public Sequential(List<? extends Module> modules) {
        modules.forEach(this::add);
    }

    public <T extends Module> T add(T module) {
        registerModule(Integer.toString(size++), module);
        return module;
    }

    public Module get(int index) {
        return child(Integer.toString(index));
    }

    public int size() {
        return size;
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray h = x;
        for (int i = 0; i < size; i++) {
            h = call(Integer.toString(i), h);
        }
        return h;
    }
}
