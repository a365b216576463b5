package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Torch;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

class AdamWTest {
    @Test
    void globalNormIsTheL2NormOverAllGradients() {
        try (NDManager m = Torch.newManager()) {
            NDArray a = m.create(new float[] {3f, 4f});
            NDArray b = m.create(new float[] {12f, 0f, 0f, 0f}, new Shape(2, 2));
            // sqrt(9 + 16 + 144) = 13
            assertThat(AdamW.globalNorm(List.of(a, b))).isCloseTo(13f, within(1e-5f));
            assertThat(AdamW.globalNorm(List.of())).isZero();
        }
    }
}
