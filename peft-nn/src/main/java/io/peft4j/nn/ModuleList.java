package io.peft4j.nn;

import java.util.ArrayList;
import java.util.List;

/** Children named {@code "0"}, {@code "1"}, ... as in {@code torch.nn.ModuleList}. */
public final class ModuleList extends Module {
    private int size;

    public ModuleList() {}

    public ModuleList(List<? extends Module> modules) {
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

    public List<Module> asList() {
        List<Module> out = new ArrayList<>(size);
        for (int i = 0; i < size; i++) {
            out.add(get(i));
        }
        return out;
    }
}
