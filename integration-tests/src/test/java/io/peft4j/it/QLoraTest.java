package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.layers.RMSNorm;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.nn.quant.Linear4bit;
import io.peft4j.nn.quant.Quantization;
import io.peft4j.nn.safetensors.DType;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.tuners.lora.LoraLinear;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** QLoRA (issue 7) on the reference LLaMA: 4-bit loading, LoRA/DoRA on top, merging, the bitsandbytes layout. */
class QLoraTest {
    static final String LLAMA = Reference.model("llama").toString();

    static PreTrainedModel load4bit() throws Exception {
        return HfModels.fromPretrained(LLAMA, null, BitsAndBytesConfig.nf4());
    }

    static float[] logits(Module model, NDArray ids) {
        try (NoGrad ng = NoGrad.enter(); NDScope s = new NDScope()) {
            s.suppressNotUsedWarning();
            ModelInput in = ModelInput.of(ids);
            NDArray out = model instanceof PeftModel p ? p.forward(in).logits() : ((PreTrainedModel) model).forward(in).logits();
            return out.toFloatArray();
        }
    }

    static double relRms(float[] a, float[] ref) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < ref.length; i++) {
            num += (a[i] - ref[i]) * (double) (a[i] - ref[i]);
            den += ref[i] * (double) ref[i];
        }
        return Math.sqrt(num / den);
    }

    static Map<String, byte[]> packed(Module model) {
        Map<String, byte[]> out = new LinkedHashMap<>();
        model.namedModules().forEach((k, m) -> {
            if (m instanceof Linear4bit q) {
                out.put(k.replace(".base_layer", ""), q.weight().data().toByteArray());
            }
        });
        return out;
    }

    @Test
    void fourBitLlamaKeepsOnlyLinearsQuantisedAndItsLogitsAreCloseToFloat32() throws Exception {
        try (PreTrainedModel fp = HfModels.fromPretrained(LLAMA); PreTrainedModel q = load4bit()) {
            NDArray ids = Reference.inputs(fp.manager())[0];
            int linears = 0;
            for (Map.Entry<String, Module> e : q.namedModules().entrySet()) {
                Module m = e.getValue();
                if (e.getKey().equals("lm_head")) {
                    assertThat(m).isInstanceOf(Linear.class); // the output layer stays full precision
                } else if (fp.getSubmodule(e.getKey()) instanceof Linear) {
                    assertThat(m).as(e.getKey()).isInstanceOf(Linear4bit.class);
                    linears++;
                } else if (m instanceof Embedding || m instanceof RMSNorm) {
                    assertThat(m.param("weight").data().getDataType()).isEqualTo(DataType.FLOAT32);
                }
            }
            assertThat(linears).isEqualTo(14); // 2 layers x (q, k, v, o, gate, up, down)
            assertThat(q.config().json().get("quantization_config").get("bnb_4bit_quant_type").asText()).isEqualTo("nf4");
            float[] ref = logits(fp, ids);
            float[] got = logits(q, ids);
            double err = relRms(got, ref);
            System.out.printf(java.util.Locale.ROOT, "qlora: 4-bit reference LLaMA logits relative RMS error %.4f%n", err);
            // NF4 weight error ~10% relative; the logits of a 2-layer model stay within a few tens of percent
            assertThat(err).isGreaterThan(0.0).isLessThan(0.3);
            // a skip list replaces the default one (as llm_int8_skip_modules does): skipping everything keeps the float model
            try (PreTrainedModel none = HfModels.fromPretrained(LLAMA, null,
                    BitsAndBytesConfig.nf4().withSkipModules(List.of("model", "lm_head")))) {
                assertThat(Quantization.isQuantized(none)).isFalse();
                assertThat(logits(none, ids)).containsExactly(ref);
            }
        }
    }

    @Test
    void trainableParametersCountFourBitWeightsTwiceAsPeft() throws Exception {
        LoraConfig cfg = LoraConfig.builder().r(4).loraAlpha(8).targetModules("q_proj", "v_proj")
                .taskType(TaskType.CAUSAL_LM).build();
        try (PreTrainedModel fp = HfModels.fromPretrained(LLAMA); PreTrainedModel q = load4bit()) {
            String fpLine = PeftModel.getPeftModel(fp, cfg).trainableParametersLine();
            PeftModel peft = PeftModel.getPeftModel(q, cfg);
            assertThat(peft.trainableParametersLine()).isEqualTo(fpLine);
            assertThat(q.getSubmodule("model.layers.0.self_attn.q_proj")).isInstanceOf(LoraLinear.class);
        }
    }

    @Test
    void loraOnFourBitTrainsLeavesPackedWeightsBitIdenticalAndMergesExactlyInFullPrecision(@TempDir Path tmp) throws Exception {
        Torch.manualSeed(4);
        try (PreTrainedModel q = load4bit()) {
            Map<String, byte[]> before = packed(q);
            PeftModel peft = PeftModel.getPeftModel(q, LoraConfig.builder().r(8).loraAlpha(16)
                    .targetModules("q_proj", "v_proj", "down_proj").taskType(TaskType.CAUSAL_LM).build());
            peft.train(true);
            NDManager m = q.manager();
            NDArray ids = m.randomInteger(4, 256, new Shape(2, 12), DataType.INT64);
            NDScope.unregister(ids);
            List<Param> params = peft.trainableParameters();
            assertThat(params).allMatch(p -> p.data().getDataType() == DataType.FLOAT32);
            AdamW opt = AdamW.builder().lr(3e-3f).maxGradNorm(1f).build();
            float first = 0;
            float last = 0;
            int live = 0;
            for (int step = 0; step < 60; step++) {
                TrainStep.Result r = TrainStep.run(
                        () -> peft.forward(ModelInput.builder().inputIds(ids).labels(ids).build()).loss(), opt, params);
                first = step == 0 ? r.loss() : first;
                last = r.loss();
                if (step == 5) {
                    live = m.getManagedArrays().size();
                }
            }
            assertThat(last).isLessThan(first - 0.5f);
            assertThat(m.getManagedArrays().size()).as("live arrays (the dequantised weights are freed each step)")
                    .isEqualTo(live);
            Map<String, byte[]> after = packed(q);
            assertThat(after.keySet()).isEqualTo(before.keySet());
            before.forEach((k, v) -> assertThat(after.get(k)).as(k).containsExactly(v));

            peft.eval();
            float[] unmerged = logits(peft, ids);
            // the adapter is an ordinary LoRA adapter: it loads onto the float32 base with every key consumed
            Path adapterDir = tmp.resolve("qlora-adapter");
            peft.saveAdapter(adapterDir);
            try (PreTrainedModel fp = HfModels.fromPretrained(LLAMA)) {
                PeftModel onFloat = PeftModel.fromPretrained(fp, adapterDir);
                onFloat.eval();
                double rel = relRms(logits(onFloat, ids), unmerged);
                assertThat(rel).isLessThan(0.3); // the float base differs from the 4-bit one by NF4's error only
                assertThat(onFloat.getNbTrainableParameters()[1]).isEqualTo(peft.getNbTrainableParameters()[1]);
            }
            Module merged = peft.mergeAndUnloadFullPrecision();
            assertThat(Quantization.isQuantized(merged)).isFalse();
            assertThat(((PreTrainedModel) merged).config().has("quantization_config")).isFalse();
            Reference.assertClose(logits(merged, ids), unmerged, "qlora merged in float32 vs unmerged");
        }
    }

    @Test
    void mergingIntoFourBitWeightsWarnsAndIsLossy() throws Exception {
        Torch.manualSeed(5);
        try (PreTrainedModel q = load4bit()) {
            PeftModel peft = PeftModel.getPeftModel(q, LoraConfig.builder().r(8).loraAlpha(16)
                    .targetModules("q_proj", "v_proj").taskType(TaskType.CAUSAL_LM).build());
            // a non-zero adapter
            try (NoGrad g = NoGrad.enter()) {
                for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
                    if (e.getKey().contains("lora_B")) {
                        e.getValue().setData(q.manager().randomNormal(0f, 0.05f, e.getValue().shape(), DataType.FLOAT32));
                    }
                }
            }
            peft.eval();
            NDArray ids = Reference.inputs(q.manager())[0];
            float[] unmerged = logits(peft, ids);
            PrintStream err = System.err;
            ByteArrayOutputStream captured = new ByteArrayOutputStream();
            Module merged;
            System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
            try {
                merged = peft.mergeAndUnload();
            } finally {
                System.setErr(err);
            }
            assertThat(captured.toString(StandardCharsets.UTF_8)).contains("lossy")
                    .contains("mergeAndUnloadFullPrecision");
            assertThat(merged.getSubmodule("model.layers.0.self_attn.q_proj")).isInstanceOf(Linear4bit.class);
            double rel = relRms(logits(merged, ids), unmerged);
            System.out.printf(java.util.Locale.ROOT, "qlora: 4-bit merge (requantised) logits relative RMS vs unmerged %.4f%n", rel);
            assertThat(rel).isGreaterThan(0.0).isLessThan(0.2);
        }
    }

    @Test
    void doraOnFourBitStartsAtTheBaseOutput() throws Exception {
        try (PreTrainedModel q = load4bit()) {
            NDArray ids = Reference.inputs(q.manager())[0];
            float[] base = logits(q, ids);
            PeftModel peft = PeftModel.getPeftModel(q, LoraConfig.builder().r(4).loraAlpha(8).useDora(true)
                    .targetModules("q_proj", "v_proj").taskType(TaskType.CAUSAL_LM).build());
            peft.eval();
            Reference.assertClose(logits(peft, ids), base, "qdora at init vs 4-bit base");
        }
    }

    @Test
    void bitsandbytesCheckpointLayoutRoundTrips(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("llama-4bit");
        try (PreTrainedModel q = load4bit()) {
            NDArray ids = Reference.inputs(q.manager())[0];
            float[] expect = logits(q, ids);
            HfModels.savePretrained(q, dir);
            JsonNode qc = Reference.JSON.readTree(dir.resolve("config.json").toFile()).get("quantization_config");
            assertThat(qc.get("quant_method").asText()).isEqualTo("bitsandbytes");
            assertThat(qc.get("load_in_4bit").asBoolean()).isTrue();
            assertThat(qc.get("bnb_4bit_quant_type").asText()).isEqualTo("nf4");
            assertThat(qc.get("bnb_4bit_use_double_quant").asBoolean()).isTrue();
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
                String w = "model.layers.0.mlp.down_proj.weight"; // (64, 128): 8192 values, 128 blocks
                assertThat(f.info(w).dtype()).isEqualTo(DType.U8);
                assertThat(f.info(w).shape()).containsExactly(4096, 1);
                assertThat(f.info(w + ".absmax").dtype()).isEqualTo(DType.U8);
                assertThat(f.info(w + ".absmax").shape()).containsExactly(128);
                assertThat(f.info(w + ".quant_map").shape()).containsExactly(16);
                assertThat(f.info(w + ".nested_absmax").shape()).containsExactly(1);
                assertThat(f.info(w + ".nested_quant_map").shape()).containsExactly(256);
                byte[] json = bytes(f, w + ".quant_state.bitsandbytes__nf4");
                String text = new String(json, StandardCharsets.UTF_8);
                assertThat(text).startsWith("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", "
                        + "\"shape\": [64, 128], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ");
                assertThat(f.info("lm_head.weight").dtype()).isEqualTo(DType.F32);
                assertThat(f.info("model.embed_tokens.weight").dtype()).isEqualTo(DType.F32);
                assertThat(f.names()).noneMatch(n -> n.startsWith("lm_head.weight."));
            }
            try (PreTrainedModel back = HfModels.fromPretrained(dir.toString())) {
                assertThat(Quantization.isQuantized(back)).isTrue();
                Map<String, byte[]> a = packed(q);
                Map<String, byte[]> b = packed(back);
                assertThat(b.keySet()).isEqualTo(a.keySet());
                a.forEach((k, v) -> assertThat(b.get(k)).as(k).containsExactly(v));
                assertThat(logits(back, ids)).containsExactly(expect);
            }
        }
        // which layers are 4-bit comes from the checkpoint's quant_state tensors, whatever the skip list says
        Path all = tmp.resolve("llama-4bit-all");
        try (PreTrainedModel q = HfModels.fromPretrained(LLAMA, null, BitsAndBytesConfig.nf4().withSkipModules(List.of()))) {
            assertThat(q.getSubmodule("lm_head")).isInstanceOf(Linear4bit.class);
            NDArray ids = Reference.inputs(q.manager())[0];
            float[] expect = logits(q, ids);
            HfModels.savePretrained(q, all);
            Path cfg = all.resolve("config.json");
            Files.writeString(cfg, Files.readString(cfg).replace("\"llm_int8_skip_modules\" : [ ]",
                    "\"llm_int8_skip_modules\" : null"));
            assertThat(Files.readString(cfg)).contains("\"llm_int8_skip_modules\" : null");
            try (PreTrainedModel back = HfModels.fromPretrained(all.toString())) {
                assertThat(back.getSubmodule("lm_head")).isInstanceOf(Linear4bit.class);
                assertThat(logits(back, ids)).containsExactly(expect);
            }
        }
        // the same without double quantisation: F32 absmax, no nested tensors
        Path plain = tmp.resolve("llama-4bit-plain");
        try (PreTrainedModel q = HfModels.fromPretrained(LLAMA, null, BitsAndBytesConfig.nf4().withDoubleQuant(false))) {
            NDArray ids = Reference.inputs(q.manager())[0];
            float[] expect = logits(q, ids);
            HfModels.savePretrained(q, plain);
            try (SafetensorsFile f = SafetensorsFile.open(plain.resolve("model.safetensors"))) {
                String w = "model.layers.1.self_attn.q_proj.weight";
                assertThat(f.info(w + ".absmax").dtype()).isEqualTo(DType.F32);
                assertThat(f.names()).doesNotContain(w + ".nested_absmax");
                assertThat(new String(bytes(f, w + ".quant_state.bitsandbytes__nf4"), StandardCharsets.UTF_8))
                        .isEqualTo("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 64]}");
            }
            try (PreTrainedModel back = HfModels.fromPretrained(plain.toString())) {
                assertThat(logits(back, ids)).containsExactly(expect);
            }
        }
    }

    @Test
    void gpt2Conv1DLayersAreQuantisedTransposedAsTransformersDoes(@TempDir Path tmp) throws Exception {
        String gpt2 = Reference.model("gpt2").toString();
        Torch.manualSeed(6);
        try (PreTrainedModel fp = HfModels.fromPretrained(gpt2);
             PreTrainedModel q = HfModels.fromPretrained(gpt2, null, BitsAndBytesConfig.nf4())) {
            String attn = q.namedModules().keySet().stream().filter(k -> k.endsWith("h.0.attn.c_attn")).findFirst()
                    .orElseThrow();
            Linear4bit cAttn = (Linear4bit) q.getSubmodule(attn);
            assertThat(cAttn.fromConv1D()).isTrue();
            assertThat(cAttn.inFeatures()).isEqualTo(64);
            assertThat(cAttn.outFeatures()).isEqualTo(192);
            // 4 Conv1D per block (c_attn, attn.c_proj, c_fc, mlp.c_proj) x 2 blocks; the tied lm_head stays float
            assertThat(q.namedModules().values().stream().filter(m -> m instanceof Linear4bit)).hasSize(8);
            NDArray ids = Reference.inputs(q.manager())[0];
            double err = relRms(logits(q, ids), logits(fp, ids));
            System.out.printf(java.util.Locale.ROOT, "qlora: 4-bit reference GPT-2 logits relative RMS error %.4f%n", err);
            assertThat(err).isGreaterThan(0.0).isLessThan(0.3);

            // bitsandbytes layout: the quant state has the transposed (out, in) shape
            Path dir = tmp.resolve("gpt2-4bit");
            HfModels.savePretrained(q, dir);
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
                String qs = new String(bytes(f, attn + ".weight.quant_state.bitsandbytes__nf4"), StandardCharsets.UTF_8);
                assertThat(qs).contains("\"shape\": [192, 64]");
                assertThat(f.info(attn + ".bias").dtype()).isEqualTo(DType.F32);
            }
            try (PreTrainedModel back = HfModels.fromPretrained(dir.toString())) {
                assertThat(((Linear4bit) back.getSubmodule(attn)).fromConv1D()).isTrue();
                assertThat(logits(back, ids)).containsExactly(logits(q, ids));
            }

            // LoRA on the default c_attn target, then an exact merge back to a float32 GPT-2 with Conv1D weights (in, out)
            PeftModel peft = PeftModel.getPeftModel(q, LoraConfig.builder().r(4).loraAlpha(8)
                    .taskType(TaskType.CAUSAL_LM).build());
            try (NoGrad g = NoGrad.enter()) {
                for (Map.Entry<String, Param> e : peft.namedParameters().entrySet()) {
                    if (e.getKey().contains("lora_B")) {
                        e.getValue().setData(q.manager().randomNormal(0f, 0.05f, e.getValue().shape(), DataType.FLOAT32));
                    }
                }
            }
            peft.eval();
            float[] unmerged = logits(peft, ids);
            Module merged = peft.mergeAndUnloadFullPrecision();
            Module conv = merged.getSubmodule(attn);
            assertThat(conv).isInstanceOf(io.peft4j.nn.layers.Conv1D.class);
            assertThat(conv.param("weight").shape()).isEqualTo(new Shape(64, 192));
            Reference.assertClose(logits(merged, ids), unmerged, "gpt2 qlora merged in float32 vs unmerged");
        }
    }

    @Test
    void peftTrainLoadsIn4bitAndTheAdapterRunsOnTheFourBitModel(@TempDir Path tmp) throws Exception {
        Path data = CliTest.trainingData(tmp);
        Path out = tmp.resolve("adapter");
        CliTest.Run r = CliTest.run("train", "--model", LLAMA, "--load-in-4bit", "--config",
                Reference.adapter("llama-lora").resolve("adapter_config.json").toString(), "--data", data.toString(),
                "--steps", "20", "--scheduler", "constant", "--logging-steps", "1", "--lr", "1e-2",
                "--out", out.toString());
        assertThat(r.code()).as(r.err()).isZero();
        List<Double> losses = CliTest.losses(r.out(), "loss=([0-9.]+)");
        assertThat(losses).hasSize(20);
        assertThat(losses.get(19)).isLessThan(losses.get(0) - 0.5);
        assertThat(out.resolve("adapter_model.safetensors")).exists();
        Path logitsOut = tmp.resolve("x.safetensors");
        CliTest.Run l = CliTest.run("logits", "--model", LLAMA, "--load-in-4bit", "--adapter", out.toString(), "--input",
                Reference.root().resolve("inputs.json").toString(), "--out", logitsOut.toString());
        assertThat(l.code()).as(l.err()).isZero();
        try (SafetensorsFile f = SafetensorsFile.open(logitsOut)) {
            assertThat(f.info("logits").shape()).containsExactly(2, 10, 256);
        }
    }

    @Test
    void badQuantStatesAreReportedWithTheTensorName(@TempDir Path tmp) throws Exception {
        Path good = tmp.resolve("good");
        try (PreTrainedModel q = load4bit()) {
            HfModels.savePretrained(q, good);
        }
        String w = "model.layers.0.self_attn.k_proj.weight"; // (32, 64)
        String qs = w + ".quant_state.bitsandbytes__nf4";
        assertThatThrownBy(() -> loadEdited(good, tmp.resolve("shape"), qs,
                json -> json.replace("\"shape\": [32, 64]", "\"shape\": [64, 32]")))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(qs)
                .hasMessageContaining("has shape [64, 32], the model's " + w + " is [32, 64]");
        assertThatThrownBy(() -> loadEdited(good, tmp.resolve("blocksize"), qs,
                json -> json.replace("\"blocksize\": 64", "\"blocksize\": 48")))
                .hasMessageContaining(qs).hasMessageContaining("blocksize 48 is not supported");
        assertThatThrownBy(() -> loadEdited(good, tmp.resolve("blocks"), qs,
                json -> json.replace("\"blocksize\": 64", "\"blocksize\": 128")))
                .hasMessageContaining(w + ".absmax").hasMessageContaining("has 32 values; blocksize 128 over 2048 elements needs 16");
        assertThatThrownBy(() -> loadEdited(good, tmp.resolve("type"), qs,
                json -> json.replace("\"quant_type\": \"nf4\"", "\"quant_type\": \"fp4\"")))
                .hasMessageContaining(qs).hasMessageContaining("quant_type \"fp4\" but its key says nf4");
        assertThatThrownBy(() -> loadEdited(good, tmp.resolve("json"), qs, json -> json.substring(0, 10)))
                .hasMessageContaining(qs).hasMessageContaining("does not hold a JSON quant state");
    }

    /** Copies a saved 4-bit model with one quant_state JSON edited, then loads it. */
    private static void loadEdited(Path good, Path dir, String key, UnaryOperator<String> edit) throws Exception {
        Files.createDirectories(dir);
        Files.copy(good.resolve("config.json"), dir.resolve("config.json"));
        Map<String, TensorData> tensors = new LinkedHashMap<>();
        try (SafetensorsFile f = SafetensorsFile.open(good.resolve("model.safetensors"))) {
            for (String n : f.names()) {
                byte[] b = bytes(f, n);
                if (n.equals(key)) {
                    b = edit.apply(new String(b, StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8);
                    tensors.put(n, TensorData.of(DType.U8, new long[] {b.length}, b));
                } else {
                    tensors.put(n, TensorData.of(f.info(n).dtype(), f.info(n).shape(), b));
                }
            }
        }
        SafetensorsWriter.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
        try (PreTrainedModel m = HfModels.fromPretrained(dir.toString())) {
            throw new AssertionError("loaded " + m.getClass());
        }
    }

    private static byte[] bytes(SafetensorsFile f, String name) {
        ByteBuffer b = f.bytes(name).duplicate();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }
}
