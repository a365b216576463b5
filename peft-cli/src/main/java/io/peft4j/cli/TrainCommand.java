package io.peft4j.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.hub.HfModels;
import io.peft4j.hub.HfTokenizer;
import io.peft4j.model.LoraPlus;
import io.peft4j.model.PeftModel;
import io.peft4j.model.SaveOptions;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.train.AdamW;
import io.peft4j.nn.train.TrainStep;
import io.peft4j.tuners.lora.LoraGA;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "train", description = "Train a causal-LM adapter on JSON lines and save it in the Hugging Face layout.")
final class TrainCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory")
    String model;

    @Option(names = "--config", required = true, description = "adapter_config.json (or its directory)")
    Path config;

    @Option(names = "--data", required = true,
            description = "JSON lines: {\"text\": ...} (needs tokenizer.json in the model dir) or {\"input_ids\": [...]}")
    Path data;

    @Option(names = "--steps", required = true, description = "optimizer steps")
    int steps;

    @Option(names = "--out", required = true, description = "where to save the adapter")
    Path out;

    @Option(names = "--lr", defaultValue = "2e-4", description = "learning rate (default ${DEFAULT-VALUE})")
    float lr;

    @Option(names = "--seed", defaultValue = "42", description = "random seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--batch-size", defaultValue = "4", description = "sequences per step (default ${DEFAULT-VALUE})")
    int batchSize;

    @Option(names = "--max-length", defaultValue = "256", description = "truncate sequences (default ${DEFAULT-VALUE})")
    int maxLength;

    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "global gradient clipping; 0 = off")
    float maxGradNorm;

    @Option(names = "--lora-ga-batches", defaultValue = "8", paramLabel = "N",
            description = "with init_lora_weights \"lora_ga\": the first N batches estimate the gradients that "
                    + "initialise the adapter (default ${DEFAULT-VALUE})")
    int loraGaBatches;

    @Option(names = "--loraplus-lr-ratio", paramLabel = "R",
            description = "LoRA+: train lora_B (and 1-D parameters) with learning rate R x --lr (peft suggests 16)")
    Float loraplusLrRatio;

    @Override
    public Integer call() throws Exception {
        if (steps <= 0 || batchSize <= 0 || maxLength < 2) {
            throw new IllegalArgumentException("--steps and --batch-size must be > 0 and --max-length >= 2");
        }
        if (loraplusLrRatio != null && !(loraplusLrRatio > 0)) {
            // Checked before the model loads, so a bad flag costs nothing and prints one line.
            throw new IllegalArgumentException("--loraplus-lr-ratio (loraplus_lr_ratio) must be > 0, got " + loraplusLrRatio);
        }
        Path modelDir = HfModels.resolve(model);
        List<long[]> examples = readExamples(modelDir);
        Torch.manualSeed(seed);
        PeftConfig cfg = PeftConfig.fromPretrained(config);
        var json = cfg.toJsonNode();
        json.put("inference_mode", false);
        PeftConfig trainConfig = PeftConfig.fromJsonNode(json, cfg.sourceName());
        boolean loraGa = trainConfig instanceof LoraConfig lc && "lora_ga".equals(lc.initLoraWeights().name());
        if (loraGa && loraGaBatches <= 0) {
            throw new IllegalArgumentException("--lora-ga-batches must be > 0, got " + loraGaBatches);
        }
        Path initialDir = null;
        try (PreTrainedModel base = HfModels.fromPretrained(model)) {
            long pad = base.config().getInt("pad_token_id", 0);
            NDManager m = base.manager();
            if (loraGa) {
                List<ModelInput> batches = new ArrayList<>();
                for (int i = 0; i < loraGaBatches; i++) {
                    batches.add(batchInput(m, batchAt(examples, i), pad));
                }
                System.out.printf(Locale.ROOT, "LoRA-GA: estimating gradients on %d batches, one target layer per "
                        + "pass%n", loraGaBatches);
                LoraGA.preprocess(base, (LoraConfig) trainConfig, batches);
            }
            PeftModel peft = PeftModel.getPeftModel(base, trainConfig);
            if (loraGa) {
                // LoRA-GA changed the base weights: keep the initial adapter to save a plain LoRA one at the end.
                initialDir = Files.createTempDirectory("peft-lora-ga-init");
                peft.saveAdapter(initialDir);
            }
            peft.printTrainableParameters();
            peft.train(true);
            AdamW opt = loraplusLrRatio == null
                    ? AdamW.builder().lr(lr).maxGradNorm(maxGradNorm).build()
                    : LoraPlus.optimizer(peft, lr, loraplusLrRatio, 0f, maxGradNorm);
            var params = peft.trainableParameters();
            long started = System.nanoTime();
            for (int step = 0; step < steps; step++) {
                List<long[]> batch = batchAt(examples, step);
                TrainStep.Result r = TrainStep.run(() -> peft.forward(batchInput(m, batch, pad)).loss(), opt, params);
                System.out.printf(Locale.ROOT, "step %d/%d loss=%.4f grad_norm=%.4f%n", step + 1, steps, r.loss(),
                        r.gradNorm());
            }
            peft.eval();
            peft.saveAdapter(out, initialDir == null ? SaveOptions.DEFAULT
                    : SaveOptions.builder().pathInitialModelForWeightConversion(initialDir).build());
            System.out.printf(Locale.ROOT, "trained %d steps in %.1f s; adapter saved to %s%s%n", steps,
                    (System.nanoTime() - started) / 1e9, out,
                    loraGa ? " (converted to plain LoRA of twice the rank, for the original base model)" : "");
        } finally {
            if (initialDir != null) {
                try (var files = Files.list(initialDir)) {
                    for (Path f : files.toList()) {
                        Files.delete(f);
                    }
                }
                Files.delete(initialDir);
            }
        }
        return 0;
    }

    private List<long[]> batchAt(List<long[]> examples, int step) {
        List<long[]> batch = new ArrayList<>();
        for (int i = 0; i < batchSize; i++) {
            batch.add(examples.get((step * batchSize + i) % examples.size()));
        }
        return batch;
    }

    /** Right-padded ids, a mask, and labels with -100 on padding. */
    static ModelInput batchInput(NDManager m, List<long[]> batch, long pad) {
        int t = batch.stream().mapToInt(a -> a.length).max().orElse(1);
        long[] ids = new long[batch.size() * t];
        long[] mask = new long[ids.length];
        long[] labels = new long[ids.length];
        for (int i = 0; i < batch.size(); i++) {
            long[] ex = batch.get(i);
            for (int j = 0; j < t; j++) {
                boolean real = j < ex.length;
                ids[i * t + j] = real ? ex[j] : pad;
                mask[i * t + j] = real ? 1 : 0;
                labels[i * t + j] = real ? ex[j] : -100;
            }
        }
        Shape s = new Shape(batch.size(), t);
        return ModelInput.builder()
                .inputIds(m.create(ids, s).toType(DataType.INT64, false))
                .attentionMask(m.create(mask, s).toType(DataType.INT64, false))
                .labels(m.create(labels, s).toType(DataType.INT64, false))
                .build();
    }

    private List<long[]> readExamples(Path modelDir) throws IOException {
        Cli.requireFile(data, "data file");
        List<long[]> out = new ArrayList<>();
        HfTokenizer tok = null;
        try {
            int lineNo = 0;
            for (String line : Files.readAllLines(data, StandardCharsets.UTF_8)) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode row;
                try {
                    row = Cli.JSON.readTree(line);
                } catch (IOException e) {
                    throw new IOException(data + ":" + lineNo + ": not valid JSON");
                }
                long[] ids;
                if (row.hasNonNull("input_ids")) {
                    JsonNode arr = row.get("input_ids");
                    ids = new long[arr.size()];
                    for (int i = 0; i < ids.length; i++) {
                        if (!arr.get(i).isIntegralNumber()) {
                            throw new IOException(data + ":" + lineNo + ": input_ids[" + i + "] is not an integer");
                        }
                        ids[i] = arr.get(i).asLong();
                    }
                } else if (row.hasNonNull("text")) {
                    if (tok == null) {
                        if (!HfTokenizer.present(modelDir)) {
                            throw new IOException(data + ":" + lineNo + ": has \"text\" but " + modelDir
                                    + " has no tokenizer.json; give \"input_ids\" instead");
                        }
                        tok = HfTokenizer.load(modelDir);
                    }
                    ids = tok.encode(row.get("text").asText());
                } else {
                    throw new IOException(data + ":" + lineNo + ": expected a \"text\" or \"input_ids\" field");
                }
                if (ids.length > maxLength) {
                    ids = java.util.Arrays.copyOf(ids, maxLength);
                }
                if (ids.length >= 2) {
                    out.add(ids);
                }
            }
        } finally {
            if (tok != null) {
                tok.close();
            }
        }
        if (out.isEmpty()) {
            throw new IOException(data + ": no example with at least 2 tokens");
        }
        return out;
    }
}
