package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

import static org.assertj.core.api.Assertions.assertThat;

/** LoRA, DoRA, IA³ and AdaLoRA on LLaMA, GPT-2 and BERT against real HF peft 0.13.2 outputs. */
class LoraParityTest {
    /** Every LoRA case of the reference set on a model peft4j implements. */
    static List<String> cases() {
        return List.of("llama-lora", "llama-lora-gaussian", "llama-rslora", "llama-lora-all-linear",
                "llama-lora-patterns", "gpt2-lora", "gpt2-lora-gaussian", "gpt2-rslora",
                "gpt2-lora-embed-fan-in-fan-out", "bert-lora", "bert-lora-gaussian", "bert-rslora",
                "llama-dora", "gpt2-dora", "bert-dora", "llama-ia3", "gpt2-ia3", "bert-ia3",
                "llama-adalora", "gpt2-adalora", "bert-adalora", "llama-adalora-pruned");
    }

    /** The reference base model of a case ({@code gpt2-rslora -> models/gpt2}). */
    static PreTrainedModel base(String name) throws Exception {
        return HfModels.fromPretrained(Reference.model(name.substring(0, name.indexOf('-'))).toString());
    }

    static float[] logits(Module model) throws Exception {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            PreTrainedModel p = model instanceof PeftModel pm ? (PreTrainedModel) pm.baseModel() : (PreTrainedModel) model;
            NDArray[] in = Reference.inputs(p.manager());
            ModelInput input = ModelInput.builder().inputIds(in[0]).attentionMask(in[1]).build();
            NDArray out = model instanceof PeftModel pm ? pm.forward(input).logits() : p.forward(input).logits();
            return out.toFloatArray();
        }
    }

    @ParameterizedTest
    @MethodSource("cases")
    void hfAdapterReproducesLogitsAndMergedLogits(String name) throws Exception {
        try (PreTrainedModel model = base(name)) {
            float[] baseLogits = logits(model);
            PeftModel peft = PeftModel.fromPretrained(model, Reference.adapter(name));
            float[] ref = Reference.tensor(name, "logits");
            Reference.assertClose(logits(peft), ref, name + " logits");
            // The case must be discriminative: the adapter moves the logits well beyond the tolerance.
            double moved = 0;
            for (int i = 0; i < ref.length; i++) {
                moved = Math.max(moved, Math.abs(baseLogits[i] - ref[i]));
            }
            assertThat(moved).isGreaterThan(0.01);

            Module merged = peft.mergeAndUnload();
            Reference.assertClose(logits(merged), Reference.tensor(name, "merged_logits"), name + " merged logits");
        }
    }

    @ParameterizedTest
    @MethodSource("cases")
    void trainableParametersLineEqualsHf(String name) throws Exception {
        JsonNode manifest = Reference.manifest(name);
        try (PreTrainedModel model = base(name)) {
            PeftConfig cfg = PeftConfig.fromPretrained(Reference.adapter(name));
            ObjectNode json = cfg.toJsonNode();
            json.put("inference_mode", false);
            PeftModel peft = PeftModel.getPeftModel(model, PeftConfig.fromJsonNode(json, name));
            assertThat(peft.trainableParametersLine()).isEqualTo(manifest.get("print_trainable_parameters").asText());
        }
    }

    /** An adapter built in Java with the case's settings saves what HF saved: names, shapes, config fields. */
    @ParameterizedTest
    @MethodSource("cases")
    void savedAdapterHasHfNamesShapesAndConfig(String name, @TempDir Path tmp) throws Exception {
        JsonNode hf = Reference.JSON.readTree(Reference.adapter(name).resolve("adapter_config.json").toFile());
        PeftConfig built = name.endsWith("-ia3") ? ia3Config(hf) : name.contains("-adalora") ? adaLoraConfig(hf)
                : loraConfig(name, hf);
        Path dir = tmp.resolve("out");
        try (PreTrainedModel model = base(name)) {
            model.setNameOrPath("models/" + name.substring(0, name.indexOf('-')));
            PeftModel peft = PeftModel.getPeftModel(model, built);
            peft.saveAdapter(dir);
        }
        Map<String, List<Long>> ours = shapes(dir.resolve("adapter_model.safetensors"));
        Map<String, List<Long>> theirs = shapes(Reference.adapter(name).resolve("adapter_model.safetensors"));
        assertThat(ours).isEqualTo(theirs);

        JsonNode saved = Reference.JSON.readTree(dir.resolve("adapter_config.json").toFile());
        assertThat(fieldNames(saved)).isEqualTo(fieldNames(hf));
        for (String field : fieldNames(hf)) {
            if (field.equals("target_modules") || field.equals("feedforward_modules")) {
                assertThat(new TreeSet<>(texts(saved.get(field)))).isEqualTo(new TreeSet<>(texts(hf.get(field))));
            } else {
                assertThat(saved.get(field)).as(name + " field " + field).isEqualTo(hf.get(field));
            }
        }
    }

    /** IA3 from the builder with only the case's targets, feed-forward modules and task. */
    private static PeftConfig ia3Config(JsonNode hf) {
        return io.peft4j.config.IA3Config.builder()
                .targetModules(texts(hf.get("target_modules")))
                .feedforwardModules(texts(hf.get("feedforward_modules")).toArray(String[]::new))
                .taskType(TaskType.valueOf(hf.get("task_type").asText()))
                .build();
    }

    /**
     * AdaLoRA from the builder with the case's settings; a {@code rank_pattern} (the pruned case) makes the save cut
     * the masked ranks out of the fresh tensors, so the shapes must come out as HF's.
     */
    private static PeftConfig adaLoraConfig(JsonNode hf) {
        io.peft4j.config.AdaLoraConfig.Builder b = io.peft4j.config.AdaLoraConfig.builder()
                .initR(hf.get("init_r").asInt())
                .targetR(hf.get("target_r").asInt())
                .loraAlpha(hf.get("lora_alpha").numberValue())
                .targetModules(texts(hf.get("target_modules")))
                .taskType(TaskType.valueOf(hf.get("task_type").asText()))
                .tinit(hf.get("tinit").asInt())
                .tfinal(hf.get("tfinal").asInt())
                .totalStep(hf.get("total_step").isNull() ? null : hf.get("total_step").asInt());
        if (!hf.get("rank_pattern").isNull()) {
            Map<String, List<Boolean>> masks = new java.util.LinkedHashMap<>();
            hf.get("rank_pattern").fields().forEachRemaining(e -> {
                List<Boolean> keep = new ArrayList<>();
                e.getValue().forEach(v -> keep.add(v.asBoolean()));
                masks.put(e.getKey(), keep);
            });
            b.rankPattern(masks);
        }
        return b.build();
    }

    /** LoRA from the builder with the case's settings (everything else at its default). */
    private static PeftConfig loraConfig(String name, JsonNode hf) {
        LoraConfig.Builder b = LoraConfig.builder()
                .r(hf.get("r").asInt())
                .loraAlpha(hf.get("lora_alpha").numberValue())
                .taskType(TaskType.valueOf(hf.get("task_type").asText()))
                .useRslora(hf.get("use_rslora").asBoolean())
                .useDora(hf.get("use_dora").asBoolean());
        List<String> targets = new ArrayList<>();
        hf.get("target_modules").forEach(t -> targets.add(t.asText()));
        b.targetModules(name.endsWith("all-linear") ? List.of("all-linear") : targets);
        if (name.endsWith("all-linear")) {
            b.targetModules(io.peft4j.config.TargetModules.allLinear());
        }
        if (hf.get("init_lora_weights").isTextual()) {
            b.initLoraWeights(hf.get("init_lora_weights").asText());
        }
        if (!hf.get("layers_to_transform").isNull()) {
            List<Integer> layers = new ArrayList<>();
            hf.get("layers_to_transform").forEach(v -> layers.add(v.asInt()));
            b.layersToTransform(layers).layersPattern(hf.get("layers_pattern").asText());
        }
        Map<String, Integer> ranks = new java.util.LinkedHashMap<>();
        hf.get("rank_pattern").fields().forEachRemaining(e -> ranks.put(e.getKey(), e.getValue().asInt()));
        Map<String, Number> alphas = new java.util.LinkedHashMap<>();
        hf.get("alpha_pattern").fields().forEachRemaining(e -> alphas.put(e.getKey(), e.getValue().numberValue()));
        b.rankPattern(ranks).alphaPattern(alphas);
        return b.build();
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama-lora", "gpt2-lora", "bert-lora", "llama-dora"})
    void mergedModelSavesLikeTransformers(String name, @TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("merged");
        try (PreTrainedModel model = base(name)) {
            PeftModel peft = PeftModel.fromPretrained(model, Reference.adapter(name));
            PreTrainedModel merged = (PreTrainedModel) peft.mergeAndUnload();
            HfModels.savePretrained(merged, out);
        }
        Path ref = Reference.root().resolve("merged/" + name + "/model.safetensors");
        try (SafetensorsFile ours = SafetensorsFile.open(out.resolve("model.safetensors"));
             SafetensorsFile theirs = SafetensorsFile.open(ref)) {
            assertThat(new TreeSet<>(ours.names())).isEqualTo(new TreeSet<>(theirs.names()));
            for (String n : theirs.names()) {
                Reference.assertClose(ours.toFloatArray(n), theirs.toFloatArray(n), n);
            }
        }
        try (PreTrainedModel reloaded = HfModels.fromPretrained(out)) {
            Reference.assertClose(logits(reloaded), Reference.tensor(name, "merged_logits"), "reloaded merged");
        }
        String type = name.substring(0, name.indexOf('-'));
        assertThat(Files.readString(out.resolve("config.json"))).contains("\"model_type\" : \"" + type + "\"");
    }

    private static Map<String, List<Long>> shapes(Path file) throws Exception {
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

    private static List<String> texts(JsonNode arr) {
        List<String> out = new ArrayList<>();
        arr.forEach(v -> out.add(v.asText()));
        return out;
    }
}
