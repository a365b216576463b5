package io.peft4j.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.hub.HfModels;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsWriter;
import io.peft4j.nn.safetensors.TensorData;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "logits", description = "Run a model (optionally with an adapter) and write its logits as safetensors.")
final class LogitsCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory (or cached repo id)")
    String model;

    @Option(names = "--adapter", description = "adapter directory (adapter_config.json + adapter_model.safetensors)")
    Path adapter;

    @Option(names = "--merge", description = "merge the adapter into the weights before running")
    boolean merge;

    @Option(names = "--input", required = true, description = "JSON with input_ids [[...]] and optional attention_mask")
    Path input;

    @Option(names = "--out", required = true, description = "output .safetensors file (tensor 'logits', F32)")
    Path out;

    @Option(names = "--load-in-4bit", description = "QLoRA: load the model's Linear layers in NF4 with double "
            + "quantisation (lm_head stays float32); a bitsandbytes 4-bit model directory loads in 4 bits anyway")
    boolean loadIn4bit;

    @Override
    public Integer call() throws Exception {
        if (merge && adapter == null) {
            throw new IllegalArgumentException("--merge needs --adapter");
        }
        JsonNode json = Cli.readJson(input);
        try (PreTrainedModel base = HfModels.fromPretrained(model, null, loadIn4bit ? BitsAndBytesConfig.nf4() : null)) {
            PreTrainedModel runModel = base;
            PeftModel peft = null;
            if (adapter != null) {
                peft = PeftModel.fromPretrained(base, HfModels.resolveAdapter(adapter.toString()));
                if (merge) {
                    runModel = (PreTrainedModel) peft.mergeAndUnload();
                    peft = null;
                }
            }
            TensorData logits;
            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray ids = Cli.int64Matrix(base.manager(), json.get("input_ids"), "input_ids", input);
                ModelInput.Builder b = ModelInput.builder().inputIds(ids);
                if (json.hasNonNull("attention_mask")) {
                    NDArray mask = Cli.int64Matrix(base.manager(), json.get("attention_mask"), "attention_mask", input);
                    if (!mask.getShape().equals(ids.getShape())) {
                        throw new IllegalArgumentException(input + ": attention_mask shape " + mask.getShape()
                                + " differs from input_ids shape " + ids.getShape());
                    }
                    b.attentionMask(mask);
                }
                ModelInput in = b.build();
                NDArray out = peft != null ? peft.forward(in).logits() : runModel.forward(in).logits();
                logits = TensorData.ofNDArray(out);
            }
            SafetensorsWriter.write(out, Map.of("logits", logits), Map.of("format", "pt"));
            long[] s = logits.shape();
            System.out.println("wrote logits " + java.util.Arrays.toString(s) + " to " + out);
        }
        return 0;
    }
}
