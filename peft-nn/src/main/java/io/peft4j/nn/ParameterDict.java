package io.peft4j.nn;

import ai.djl.ndarray.NDArray;

import java.util.Map;

/** Parameters keyed by name, as in {@code torch.nn.ParameterDict} (e.g. {@code lora_embedding_A[adapter]}). */
public final class ParameterDict extends Module {

    public Param put(String key, NDArray data, boolean requiresGrad) {
        Param p = new Param(data, requiresGrad);
        setParam(key, p);
        return p;
    }

    public Param get(String key) {
        return parameters().get(key);
    }

    public boolean containsKey(String key) {
        return parameters().containsKey(key);
    }

    public Param remove(String key) {
        return removeParam(key);
    }

    public Map<String, Param> asMap() {
        return parameters();
    }
}
