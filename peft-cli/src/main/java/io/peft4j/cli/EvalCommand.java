package io.peft4j.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.cli.train.TextTask;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.TaskType;
import io.peft4j.hub.HfModels;
import io.peft4j.model.PeftModel;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.ModelOutput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.quant.BitsAndBytesConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Function;

@Command(name = "eval", description = "Loss and perplexity (causal LM) or loss and accuracy (sequence classification) "
        + "of a model, with or without an adapter, on a dataset.")
final class EvalCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Hugging Face model directory (or cached repo id)")
    String model;

    @Option(names = "--adapter", description = "adapter directory (or cached repo id); its task_type picks the task")
    String adapter;

    @Option(names = "--merge", description = "merge the adapter into the weights first")
    boolean merge;

    @Option(names = "--data", required = true, description = "rows as for peft train: causal-LM rows, or "
            + "{\"text\" or \"input_ids\", \"label\"} rows / a text,label .csv for classification")
    Path data;

    @Option(names = "--task", description = "causal-lm or seq-cls (default: the adapter's task_type, else the model's "
            + "architectures)")
    String task;

    @Option(names = "--batch-size", defaultValue = "8", description = "rows per batch (default ${DEFAULT-VALUE})")
    int batchSize;

    @Option(names = "--max-length", defaultValue = "256", description = "truncate rows (default ${DEFAULT-VALUE})")
    int maxLength;

    @Option(names = "--load-in-4bit", description = "load the model's Linear layers in NF4 (QLoRA), as peft train "
            + "--load-in-4bit")
    boolean loadIn4bit;

    @Option(names = "--json", description = "print the metrics as one JSON object")
    boolean json;

    @Override
    public Integer call() throws Exception {
        if (batchSize <= 0 || maxLength < 2) {
            throw new IllegalArgumentException("--batch-size must be > 0 and --max-length >= 2");
        }
        Path modelDir = HfModels.resolve(model);
        Path adapterDir = adapter == null ? null : HfModels.resolveAdapter(adapter);
        TaskType type = taskType(adapterDir, modelDir);
        try (TextTask.LazyTokenizer tok = new TextTask.LazyTokenizer(modelDir);
             PreTrainedModel base = TextTask.loadModel(model, type, loadIn4bit ? BitsAndBytesConfig.nf4() : null)) {
            TextTask<Object> t = TextTask.read(type, base, tok, data, maxLength);
            Function<ModelInput, ModelOutput> forward = base::forward;
            PeftModel peft = null;
            if (adapterDir != null) {
                peft = PeftModel.fromPretrained(base, adapterDir);
                if (merge) {
                    peft.mergeAdapter();
                }
                forward = peft::forward;
            } else if (merge) {
                throw new IllegalArgumentException("--merge needs --adapter");
            }
            base.eval();
            Map<String, Double> m = t.evaluate(forward, base.manager(), t.rows(), batchSize);
            if (json) {
                ObjectNode o = Cli.JSON.createObjectNode();
                o.put("task", type.name());
                m.forEach((k, v) -> {
                    if (k.equals("rows") || k.equals("tokens")) {
                        o.put(k, v.longValue());
                    } else {
                        o.put(k, v);
                    }
                });
                System.out.println(Cli.JSON.writeValueAsString(o));
            } else if (type == TaskType.SEQ_CLS) {
                System.out.printf(Locale.ROOT, "eval %s rows=%d loss=%.4f accuracy=%.4f%n", data, m.get("rows").longValue(),
                        m.get("loss"), m.get("accuracy"));
            } else {
                System.out.printf(Locale.ROOT, "eval %s rows=%d tokens=%d loss=%.4f perplexity=%.4f%n", data,
                        m.get("rows").longValue(), m.get("tokens").longValue(), m.get("loss"), m.get("perplexity"));
            }
        }
        return 0;
    }

    private TaskType taskType(Path adapterDir, Path modelDir) throws java.io.IOException {
        if (task != null) {
            return switch (task.toLowerCase(Locale.ROOT).replace('_', '-')) {
                case "causal-lm" -> TaskType.CAUSAL_LM;
                case "seq-cls" -> TaskType.SEQ_CLS;
                default -> throw new IllegalArgumentException("--task must be causal-lm or seq-cls, got " + task);
            };
        }
        if (adapterDir != null) {
            TaskType t = PeftConfig.fromPretrained(adapterDir).taskType();
            if (t == TaskType.SEQ_CLS || t == TaskType.CAUSAL_LM) {
                return t;
            }
        }
        return TextTask.taskOf(modelDir);
    }
}
