package io.peft4j.cli;

import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.model.PreTrainedModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.Callable;

@Command(name = "merge", description = "Merge an adapter into its base model and save a Hugging Face model directory.")
final class MergeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory")
    String model;

    @Option(names = "--adapter", required = true, description = "adapter directory")
    Path adapter;

    @Option(names = "--out", required = true, description = "output directory (config.json + model.safetensors)")
    Path out;

    @Option(names = "--safe", description = "refuse to merge when a merged weight would be NaN or infinite")
    boolean safe;

    @Override
    public Integer call() throws Exception {
        Cli.requireDir(adapter, "adapter");
        Path modelDir = HfModels.resolve(model);
        try (PreTrainedModel base = HfModels.fromPretrained(model)) {
            PeftModel peft = PeftModel.fromPretrained(base, HfModels.resolveAdapter(adapter.toString()));
            PreTrainedModel merged = (PreTrainedModel) peft.mergeAndUnload(safe, null);
            HfModels.savePretrained(merged, out);
        }
        for (String extra : new String[] {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json"}) {
            Path src = modelDir.resolve(extra);
            if (Files.isRegularFile(src)) {
                Files.copy(src, out.resolve(extra), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        System.out.println("merged " + adapter + " into " + model + " -> " + out);
        return 0;
    }
}
