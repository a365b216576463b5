package io.peft4j.it;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.model.PeftModel;
import io.peft4j.model.PeftModelForSequenceClassification;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.model.PreTrainedModel;
import io.peft4j.nn.safetensors.SafetensorsFile;
import io.peft4j.transformers.distilbert.DistilBertConfig;
import io.peft4j.transformers.distilbert.DistilBertForSequenceClassification;
import io.peft4j.transformers.gpt2.Gpt2Config;
import io.peft4j.transformers.gpt2.Gpt2ForSequenceClassification;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Adapters trained with HF peft and published on the Hub (gpt2 and distilbert, sequence classification), read
 * from {@code ../shared/fixtures} (not shipped). Their base checkpoints are not available offline, so each loads
 * onto a model built from the standard config with random weights: every key must be consumed with its shape
 * checked, and the saved heads (modules_to_save) must replace the random ones.
 */
class RealAdaptersTest {
    static Path fixture(String name) {
        String prop = System.getProperty("peft4j.shared");
        Path dir = Paths.get(prop == null ? "../shared" : prop, "fixtures", name);
        Assumptions.assumeTrue(Files.isDirectory(dir), "shared fixture " + dir + " not found; skipping");
        return dir;
    }

    @ParameterizedTest
    @ValueSource(strings = {"real-adapter-gpt2-seqcls", "real-adapter-distilbert-emotion", "real-adapter-distilbert-imdb"})
    void loadsOntoTheStandardArchitectureWithEveryKeyConsumed(String name) throws Exception {
        Path dir = fixture(name);
        try (NDManager nd = Torch.newManager();
             SafetensorsFile st = SafetensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            boolean gpt2 = name.contains("gpt2");
            String head = gpt2 ? "base_model.model.score.weight" : "base_model.model.classifier.weight";
            int labels = (int) st.info(head).shape()[0];
            PreTrainedModel model = gpt2
                    // gpt2 (small)'s config.json
                    ? new Gpt2ForSequenceClassification(nd, Gpt2Config.builder().vocabSize(50257).nPositions(1024)
                            .nEmbd(768).nLayer(12).nHead(12).numLabels(labels).padTokenId(50256).build())
                    // distilbert-base-uncased's config.json
                    : new DistilBertForSequenceClassification(nd, DistilBertConfig.builder().vocabSize(30522).dim(768)
                            .nLayers(6).nHeads(12).hiddenDim(3072).maxPositionEmbeddings(512).numLabels(labels).build());

            PeftModel peft = PeftModel.fromPretrained(model, dir);
            assertThat(peft).isInstanceOf(PeftModelForSequenceClassification.class);

            // Every tensor of the file is now a parameter of the model, bit for bit.
            Map<String, Param> saved = peft.tuner().adapterStateDict("default", "base_model.");
            assertThat(saved.keySet()).containsExactlyInAnyOrderElementsOf(st.names());
            for (String n : st.names()) {
                // isEqualTo compares arrays element-wise in linear time (containsExactly is quadratic here).
                assertThat(saved.get(n).data().toFloatArray()).as(n).isEqualTo(st.toFloatArray(n));
            }
            // The restored head is what forward uses (not the random original).
            String headPath = gpt2 ? "base_model.model.score.modules_to_save.default.weight"
                    : "base_model.model.classifier.modules_to_save.default.weight";
            assertThat(peft.namedParameters().get(headPath).data().toFloatArray()).isEqualTo(st.toFloatArray(head));

            try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray ids = nd.create(new long[] {101, 2023, 3185, 2001, 2307, 102}, new Shape(1, 6));
                NDArray logits = peft.forward(ModelInput.builder().inputIds(ids).build()).logits();
                assertThat(logits.getShape()).isEqualTo(new Shape(1, labels));
                assertThat(logits.isNaN().any().getBoolean() || logits.isInfinite().any().getBoolean()).isFalse();
            }
        }
    }
}
