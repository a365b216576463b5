package io.peft4j.nn;

import java.util.Map;

/** Children keyed by name, as in {@code torch.nn.ModuleDict}; PEFT keys adapter containers by adapter name. */
public final class ModuleDict extends Module {

    public <T extends Module> T put(String key, T module) {
        setChild(key, module);
        return module;
    }

    public Module get(String key) {
        return children().get(key);
    }

    public boolean containsKey(String key) {
        return hasChild(key);
    }

    public Module remove(String key) {
        return removeChild(key);
    }

    public Map<String, Module> asMap() {
        return children();
    }
}
