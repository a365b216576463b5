package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.PeftConfig;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

import static org.assertj.core.api.Assertions.assertThat;

/** Prompt tuning, P-tuning and prefix tuning on LLaMA, GPT-2 and BERT against real HF peft 0.13.2 outputs. */
class PromptParityTest {
    /** Every prompt-learning case of the reference set. */
    static List<String> cases() {
        List<String> out = new ArrayList<>();
        for (String model : List.of("llama", "gpt2", "bert")) {
            for (String method : List.of("prompt", "ptuning", "prefix", "prefix-proj")) {
                out.add(model + "-" + method);
            }
        }
        return out;
    }

    static PreTrainedModel base(String name) throws Exception {
        return LoraParityTest.base(name);
    }

    static float[] logits(PeftModel peft) throws Exception {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            PreTrainedModel p = (PreTrainedModel) peft.baseModel();
            NDArray[] in = Reference.inputs(p.manager());
            NDArray out = peft.forward(ModelInput.builder().inputIds(in[0]).attentionMask(in[1]).build()).logits();
            return out.toFloatArray();
        }
    }

    @ParameterizedTest
    @MethodSource("cases")
    void hfAdapterReproducesLogits(String name) throws Exception {
        JsonNode manifest = Reference.manifest(name);
        try (PreTrainedModel model = base(name)) {
            float[] baseLogits = LoraParityTest.logits(model);
            PeftModel peft = PeftModel.fromPretrained(model, Reference.adapter(name));
            float[] ref = Reference.tensor(name, "logits");
            float[] ours = logits(peft);
            List<Long> shape = new ArrayList<>();
            manifest.get("logits_shape").forEach(v -> shape.add(v.asLong()));
            assertThat(ours).as("logits of shape %s", shape).hasSize(shape.stream().mapToInt(Long::intValue).reduce(1, (a, b) -> a * b));
            Reference.assertClose(ours, ref, name + " logits");
            // Discriminative: the adapter moves the logits (of the real tokens) well beyond the tolerance.
            int offset = ref.length - baseLogits.length; // causal prompt/p-tuning: virtual positions come first
            double moved = 0;
            if (offset == 0) {
                for (int i = 0; i < ref.length; i++) {
                    moved = Math.max(moved, Math.abs(baseLogits[i] - ref[i]));
                }
            } else {
                int b = shape.get(0).intValue();
                int perRowRef = ref.length / b;
                int perRowBase = baseLogits.length / b;
                for (int r = 0; r < b; r++) {
                    for (int i = 0; i < perRowBase; i++) {
                        moved = Math.max(moved, Math.abs(baseLogits[r * perRowBase + i]
                                - ref[r * perRowRef + perRowRef - perRowBase + i]));
                    }
                }
            }
            assertThat(moved).isGreaterThan(0.01);

            // Every hidden state too (embedding output, each layer, the final norm), virtual positions included.
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray[] in = Reference.inputs(model.manager());
                List<NDArray> hidden = peft.forward(ModelInput.builder().inputIds(in[0]).attentionMask(in[1])
                        .outputHiddenStates(true).build()).hiddenStates();
                assertThat(hidden).hasSize(manifest.get("hidden_states_shapes").size());
                for (int i = 0; i < hidden.size(); i++) {
                    Reference.assertClose(hidden.get(i).toFloatArray(), Reference.tensor(name, "hidden_states." + i),
                            name + " hidden_states." + i);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("cases")
    void trainableParametersLineEqualsHf(String name) throws Exception {
        JsonNode manifest = Reference.manifest(name);
        try (PreTrainedModel model = base(name)) {
            PeftModel peft = PeftModel.getPeftModel(model, freshConfig(name));
            assertThat(peft.trainableParametersLine()).isEqualTo(manifest.get("print_trainable_parameters").asText());
            long[] n = peft.getNbTrainableParameters();
            assertThat(n[0]).isEqualTo(manifest.get("trainable_params").asLong());
            assertThat(n[1]).isEqualTo(manifest.get("all_params").asLong());
            // Nothing of the base model trains except a SEQ_CLS head's adapter copy.
            peft.namedParameters().forEach((k, p) -> {
                if (k.startsWith("base_model.") && !k.contains(".modules_to_save.")) {
                    assertThat(p.requiresGrad()).as(k).isFalse();
                }
            });
        }
    }

    /**
     * An adapter created in Java from the case's settings, dimensions left for the model to fill, saves what HF
     * saved: the same tensor names, dtypes and shapes, and the same adapter_config.json fields and values.
     */
    @ParameterizedTest
    @MethodSource("cases")
    void savedAdapterHasHfNamesShapesAndConfig(String name, @TempDir Path tmp) throws Exception {
        JsonNode hf = Reference.JSON.readTree(Reference.adapter(name).resolve("adapter_config.json").toFile());
        Path dir = tmp.resolve("out");
        try (PreTrainedModel model = base(name)) {
            model.setNameOrPath("models/" + name.substring(0, name.indexOf('-')));
            PeftModel peft = PeftModel.getPeftModel(model, freshConfig(name));
            peft.saveAdapter(dir);
        }
        assertThat(shapes(dir.resolve("adapter_model.safetensors")))
                .isEqualTo(shapes(Reference.adapter(name).resolve("adapter_model.safetensors")));
        JsonNode saved = Reference.JSON.readTree(dir.resolve("adapter_config.json").toFile());
        assertThat(fieldNames(saved)).isEqualTo(fieldNames(hf));
        for (String field : fieldNames(hf)) {
            assertThat(saved.get(field)).as(name + " field " + field).isEqualTo(hf.get(field));
        }
    }

    /** Train-mode adapter (random encoder) saved and loaded onto a fresh base gives the same logits. */
    @ParameterizedTest
    @MethodSource("cases")
    void saveLoadRoundTripKeepsLogits(String name, @TempDir Path tmp) throws Exception {
        float[] before;
        Path dir = tmp.resolve("adapter");
        try (PreTrainedModel model = base(name)) {
            PeftModel peft = PeftModel.getPeftModel(model, freshConfig(name));
            peft.eval();
            before = logits(peft);
            peft.saveAdapter(dir);
        }
        try (PreTrainedModel model = base(name)) {
            PeftModel loaded = PeftModel.fromPretrained(model, dir);
            float[] after = logits(loaded);
            Reference.assertClose(after, before, name + " reloaded");
            assertThat(loaded.getNbTrainableParameters()[0]).as("loaded for inference: frozen").isZero();
        }
    }

    /** The case's config as a user would write it: inference off, the model-derived dimensions unset. */
    static PeftConfig freshConfig(String name) throws Exception {
        ObjectNode json = (ObjectNode) Reference.JSON.readTree(
                Reference.adapter(name).resolve("adapter_config.json").toFile());
        json.put("inference_mode", false);
        json.putNull("base_model_name_or_path");
        JsonNode tokenDim = json.get("token_dim");
        if (json.has("encoder_hidden_size") && json.get("encoder_hidden_size").equals(tokenDim)) {
            json.putNull("encoder_hidden_size");
        }
        for (String f : List.of("token_dim", "num_layers", "num_attention_heads", "num_transformer_submodules")) {
            json.putNull(f);
        }
        return PeftConfig.fromJsonNode(json, name);
    }

    static Map<String, List<Long>> shapes(Path file) throws Exception {
        Map<String, List<Long>> out = new TreeMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            for (String n : f.names()) {
                List<Long> s = new ArrayList<>();
                for (long d : f.info(n).shape()) {
                    s.add(d);
                }
                out.put(n + ":" + f.info(n).dtype(), s);
            }
        }
        return out;
    }

    private static TreeSet<String> fieldNames(JsonNode n) {
        TreeSet<String> out = new TreeSet<>();
        Iterator<String> it = n.fieldNames();
        it.forEachRemaining(out::add);
        return out;
    }
}
