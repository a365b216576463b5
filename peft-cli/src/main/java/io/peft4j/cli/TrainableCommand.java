package io.peft4j.cli;

import io.peft4j.config.PeftConfig;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.model.PreTrainedModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "trainable", description = "Print the printTrainableParameters line of getPeftModel(model, config).")
final class TrainableCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory")
    String model;

    @Option(names = "--config", required = true, description = "adapter_config.json (or its directory)")
    Path config;

    @Override
    public Integer call() throws Exception {
        Cli.requireFile(config.toFile().isDirectory() ? config.resolve("adapter_config.json") : config, "config");
        PeftConfig cfg = PeftConfig.fromPretrained(config);
        var json = cfg.toJsonNode();
        json.put("inference_mode", false);
        try (PreTrainedModel base = HfModels.fromPretrained(model)) {
            PeftModel peft = PeftModel.getPeftModel(base, PeftConfig.fromJsonNode(json, cfg.sourceName()));
            peft.printTrainableParameters();
        }
        return 0;
    }
}
