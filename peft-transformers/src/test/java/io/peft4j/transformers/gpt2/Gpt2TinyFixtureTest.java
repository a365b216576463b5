package io.peft4j.transformers.gpt2;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.model.ModelInput;
import io.peft4j.nn.safetensors.SafetensorsFile;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** sshleifer/tiny-gpt2 (a real hub checkpoint, re-saved by transformers 4.52) from the shared fixtures. */
class Gpt2TinyFixtureTest {
    private static Path fixture() {
        String shared = System.getProperty("peft4j.shared");
        Path dir = shared == null ? null : Path.of(shared, "fixtures", "tiny-gpt2");
        assumeTrue(dir != null && Files.isRegularFile(dir.resolve("model.safetensors")),
                "shared fixture fixtures/tiny-gpt2 not found (set -Dpeft4j.shared); skipping");
        return dir;
    }

    @Test
    void loadsWithEveryKeyConsumedAndGivesFiniteLogits() throws Exception {
        Path dir = fixture();
        try (Gpt2LMHeadModel model = Gpt2LMHeadModel.fromPretrained(dir);
             SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"));
             NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            // Strict loading rejects unexpected keys; here the saved state is exactly the file's key set,
            // with the tied lm_head left out as transformers saves it.
            assertThat(model.isTied()).isTrue();
            assertThat(model.stateDict().keySet()).containsExactlyInAnyOrderElementsOf(file.names());
            for (String name : file.names()) {
                assertThat(Arrays.equals(model.getParameter(name).data().toFloatArray(), file.toFloatArray(name)))
                        .as("%s loaded bit-exactly", name).isTrue();
            }
            NDArray ids = model.manager().create(new long[] {464, 2068, 7586, 21831, 50256, 0}, new Shape(2, 3));
            NDArray logits = model.forward(ModelInput.of(ids)).logits();
            assertThat(logits.getShape()).isEqualTo(new Shape(2, 3, 50257));
            assertThat(logits.isNaN().any().getBoolean()).isFalse();
            assertThat(logits.isInfinite().any().getBoolean()).isFalse();
        }
    }
}
