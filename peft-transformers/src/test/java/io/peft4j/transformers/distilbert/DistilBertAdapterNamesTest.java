package io.peft4j.transformers.distilbert;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.peft4j.nn.Module;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Linear;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.nn.safetensors.TensorInfo;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Real LoRA adapters trained with HF peft on distilbert-base-uncased (read from the shared fixtures, never
 * copied): every module and tensor they name must exist, with matching shapes, in a DistilBERT built from
 * the standard distilbert-base-uncased config.
 */
class DistilBertAdapterNamesTest {
    private static final String PREFIX = "base_model.model.";

    @ParameterizedTest
    @ValueSource(strings = {"real-adapter-distilbert-emotion", "real-adapter-distilbert-imdb"})
    void adapterNamesExistInTheModel(String fixture) throws Exception {
        String shared = System.getProperty("peft4j.shared");
        Path dir = shared == null ? null : Path.of(shared, "fixtures", fixture);
        assumeTrue(dir != null && Files.isRegularFile(dir.resolve("adapter_model.safetensors")),
                "shared fixture " + fixture + " not found (set -Dpeft4j.shared); skipping");

        JsonNode config = new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
        List<String> targets = new ArrayList<>();
        config.get("target_modules").forEach(n -> targets.add(n.asText()));
        List<TensorInfo> tensors;
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            tensors = f.infos();
        }
        int numLabels = (int) tensors.stream().filter(t -> t.name().equals(PREFIX + "classifier.weight"))
                .findFirst().orElseThrow().shape()[0];

        // distilbert-base-uncased's config.json (defaults of the builder) with the adapter's label count.
        DistilBertConfig cfg = DistilBertConfig.builder().vocabSize(30522).dim(768).nLayers(6).nHeads(12)
                .hiddenDim(3072).maxPositionEmbeddings(512).numLabels(numLabels).build();
        try (NDManager nd = Torch.newManager()) {
            // Only names and shapes matter here: skip the normal init (half the construction time of 67M params).
            DistilBertForSequenceClassification model = new DistilBertForSequenceClassification(nd, cfg, false);
            Map<String, Module> modules = model.namedModules();
            int lora = 0;
            for (TensorInfo t : tensors) {
                assertThat(t.name()).startsWith(PREFIX);
                String key = t.name().substring(PREFIX.length());
                int at = key.indexOf(".lora_");
                if (at >= 0) {
                    // <module>.lora_A.weight [r, in] / <module>.lora_B.weight [out, r] on a Linear.
                    String path = key.substring(0, at);
                    assertThat(modules).as(t.name()).containsKey(path);
                    assertThat(modules.get(path)).as(path).isInstanceOf(Linear.class);
                    Linear base = (Linear) modules.get(path);
                    if (key.endsWith("lora_A.weight")) {
                        assertThat(t.shape()[1]).as(t.name()).isEqualTo(base.inFeatures());
                    } else {
                        assertThat(t.shape()[0]).as(t.name()).isEqualTo(base.outFeatures());
                    }
                    assertThat(targets).as(path).anyMatch(path::endsWith);
                    lora++;
                } else {
                    // modules_to_save copies (classifier, pre_classifier): same names and shapes as the model's.
                    assertThat(model.namedParameters()).as(t.name()).containsKey(key);
                    assertThat(model.getParameter(key).shape().getShape()).as(key).containsExactly(t.shape());
                }
            }
            assertThat(lora).isEqualTo(2 * 2 * cfg.nLayers()); // q_lin and v_lin, A and B, every layer
            // distilbert-base-uncased's published size: the architecture is complete, nothing extra.
            assertThat(model.distilbert().numParameters()).isEqualTo(66_362_880L);
            for (String target : targets) {
                assertThat(modules.keySet()).as("target module %s", target).anyMatch(k -> k.endsWith("." + target));
            }
            System.out.printf("%s: %d tensors map onto DistilBertForSequenceClassification (%d labels, %,d params)%n",
                    fixture, tensors.size(), numLabels, model.numParameters());
        }
    }
}
