package io.peft4j.cli.train;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.train.Trainer;
import io.peft4j.nn.train.TrainingArguments;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class ProgressCallbackTest {
    @Test
    void showsStepsLossAndTheFinalSummary() {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (NDManager nd = Torch.newManager(); PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            Module m = new Module() {
                {
                    registerParameter("w", new Param(nd.create(new float[] {1f, 2f})));
                }
            };
            Param w = m.getParameter("w");
            Trainer.<Integer>builder().model(m).trainData(List.of(1, 2, 3)).callback(new ProgressCallback(out, "train"))
                    .args(TrainingArguments.builder().batchSize(1).numEpochs(1).learningRate(0.1f).build())
                    .loss(batch -> w.data().mul(w.data()).sum()).build().train();
        }
        String text = buf.toString(StandardCharsets.UTF_8);
        assertThat(text).contains("3/3").contains("loss ").contains("lr ").contains("tok/s");
        assertThat(text).containsPattern("train: 3 steps in [0-9.]+ s");
    }
}
