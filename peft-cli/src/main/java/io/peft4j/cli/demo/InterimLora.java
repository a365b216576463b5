package io.peft4j.cli.demo;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Linear;

import java.util.ArrayList;
import java.util.List;

/**
 * TODO(peft-model): delete this class once {@code io.peft4j.model.PeftModel.getPeftModel} is on main and
 * {@link FashionMnistDemo#attachLora} calls it. This is a stand-in so the rest of the demo (data, training,
 * evaluation, weight checks, output) can be built and tested end to end before the real tuner lands; it
 * mirrors HF's LoRA Linear ({@code base_layer} child, {@code A} Kaiming-uniform, {@code B} zero, scaling
 * {@code alpha/r}) but not HF's parameter names.
 */
final class InterimLora implements LoraAttachment {
    private final Module model;
    private final List<LoraLinear> layers = new ArrayList<>();

    InterimLora(Module model, NDManager manager, int r, float alpha, String... targets) {
        this.model = model;
        model.requiresGrad(false);
        for (String t : targets) {
            LoraLinear l = new LoraLinear(manager, (Linear) model.getSubmodule(t), r, alpha);
            model.setSubmodule(t, l);
            layers.add(l);
        }
    }

    @Override
    public NDArray forward(NDArray x) {
        return model.forward(x);
    }

    @Override
    public List<Param> trainableParameters() {
        List<Param> out = new ArrayList<>();
        for (Param p : model.namedParameters().values()) {
            if (p.requiresGrad()) {
                out.add(p);
            }
        }
        return out;
    }

    @Override
    public String trainableParametersLine() {
        long trainable = model.numTrainableParameters();
        long all = model.numParameters();
        return String.format("trainable params: %,d || all params: %,d || trainable%%: %.4f", trainable, all,
                100.0 * trainable / all);
    }

    @Override
    public AutoCloseable disableAdapter() {
        layers.forEach(l -> l.enabled = false);
        return () -> layers.forEach(l -> l.enabled = true);
    }

    @Override
    public Module baseModel() {
        return model;
    }

    private static final class LoraLinear extends Module {
        private final float scaling;
        boolean enabled = true;

        LoraLinear(NDManager m, Linear base, int r, float alpha) {
            registerModule("base_layer", base);
            float bound = (float) (1.0 / Math.sqrt(base.inFeatures()));
            registerParameter("lora_A", m.randomUniform(-bound, bound, new Shape(r, base.inFeatures())));
            registerParameter("lora_B", m.zeros(new Shape(base.outFeatures(), r)));
            scaling = alpha / r;
        }

        @Override
        public NDArray forward(NDArray x) {
            NDArray y = call("base_layer", x);
            if (!enabled) {
                return y;
            }
            NDArray delta = F.linear(F.linear(x, param("lora_A").data(), null), param("lora_B").data(), null);
            return y.add(delta.mul(scaling));
        }
    }
}
