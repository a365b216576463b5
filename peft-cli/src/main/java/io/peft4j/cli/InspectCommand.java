package io.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.config.AbstractLoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import io.peft4j.nn.safetensors.TensorInfo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

@Command(name = "inspect", description = "Summarise an adapter directory, a model directory or a .safetensors file.")
final class InspectCommand implements Callable<Integer> {
    @Parameters(index = "0", description = "adapter dir, model dir or .safetensors file")
    Path path;

    @Override
    public Integer call() throws Exception {
        if (Files.isRegularFile(path) && path.toString().endsWith(".safetensors")) {
            try (SafetensorsFile f = SafetensorsFile.open(path)) {
                System.out.println("safetensors file " + path + " (" + Files.size(path) + " bytes)");
                summarise(f.infos(), f.metadata());
            }
            return 0;
        }
        if (!Files.isDirectory(path)) {
            throw new IOException(path + " does not exist");
        }
        if (Files.isRegularFile(path.resolve("adapter_config.json"))) {
            PeftConfig c = PeftConfig.fromPretrained(path);
            System.out.println("adapter " + path);
            System.out.println("  peft_type:   " + c.peftType());
            System.out.println("  task_type:   " + c.taskType());
            System.out.println("  base model:  " + c.baseModelNameOrPath());
            if (c instanceof AbstractLoraConfig l) {
                System.out.println("  r / alpha:   " + l.r() + " / " + l.loraAlpha() + (l.useRslora() ? " (rsLoRA)" : ""));
                System.out.println("  targets:     " + (l.targetModules() == null ? "(model default)"
                        : l.targetModules().isRegex() ? l.targetModules().regex() : l.targetModules().names()));
                System.out.println("  bias:        " + l.bias().value() + ", dropout " + l.loraDropout()
                        + (l.useDora() ? ", DoRA" : ""));
            }
            Path w = path.resolve("adapter_model.safetensors");
            if (Files.isRegularFile(w)) {
                try (SafetensorsFile f = SafetensorsFile.open(w)) {
                    summarise(f.infos(), f.metadata());
                }
            } else {
                System.out.println("  (no adapter_model.safetensors)");
            }
            return 0;
        }
        if (Files.isRegularFile(path.resolve("config.json"))) {
            JsonNode cfg = Cli.readJson(path.resolve("config.json"));
            System.out.println("model " + path);
            for (String k : new String[] {"model_type", "architectures", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size",
                    "tie_word_embeddings", "torch_dtype"}) {
                if (cfg.has(k)) {
                    System.out.printf(Locale.ROOT, "  %-20s %s%n", k + ":", cfg.get(k));
                }
            }
            System.out.println("  tokenizer.json:      " + Files.isRegularFile(path.resolve("tokenizer.json")));
            try (ShardedSafetensors st = ShardedSafetensors.open(path)) {
                System.out.println("  weight files:        " + st.shards().size());
                summarise(st.names().stream().map(st::info).toList(), st.metadata());
            }
            return 0;
        }
        throw new IOException(path + ": neither an adapter (adapter_config.json) nor a model (config.json) directory");
    }

    private static void summarise(Iterable<TensorInfo> infos, Map<String, String> metadata) {
        long params = 0;
        long bytes = 0;
        int n = 0;
        Map<String, Integer> dtypes = new TreeMap<>();
        StringBuilder sample = new StringBuilder();
        for (TensorInfo i : infos) {
            params += i.numel();
            bytes += i.byteSize();
            dtypes.merge(i.dtype().name(), 1, Integer::sum);
            if (n < 6) {
                sample.append("\n    ").append(i.name()).append(' ').append(java.util.Arrays.toString(i.shape()))
                        .append(' ').append(i.dtype());
            }
            n++;
        }
        System.out.printf(Locale.ROOT, "  tensors:             %d (%,d parameters, %,d bytes), dtypes %s%n", n, params,
                bytes, dtypes);
        System.out.println("  metadata:            " + metadata);
        System.out.println("  first tensors:" + sample + (n > 6 ? "\n    ..." : ""));
    }
}
