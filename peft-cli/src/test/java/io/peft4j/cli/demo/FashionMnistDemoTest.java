package io.peft4j.cli.demo;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

/** End to end on a small slice of the shipped data (100 pre-training batches) so it stays fast. */
class FashionMnistDemoTest {

    @Test
    void loraFixesTheWorstClassWithoutTouchingTheBaseModel() {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        FashionMnistDemo.Options opts = FashionMnistDemo.Options.defaults()
                .withShippedOnly(true)
                .withLimits(1000, 1000)
                .withFinetuneBatches(30);
        FashionMnistDemo.Result r;
        try (PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            r = FashionMnistDemo.run(opts, out);
        }
        String text = buf.toString(StandardCharsets.UTF_8);

        assertThat(r.trainSize()).isEqualTo(1000);
        assertThat(r.testSize()).isEqualTo(1000);
        int w = r.worstClass();
        for (int c = 0; c < 10; c++) {
            assertThat(r.errorsBefore()[c] / (double) r.testPerClass()[c])
                    .isLessThanOrEqualTo(r.errorsBefore()[w] / (double) r.testPerClass()[w]);
        }
        assertThat(r.errorsAfter()[w]).isLessThan(r.errorsBefore()[w]);
        assertThat(r.errorsDisabled()).containsExactly(r.errorsBefore());
        assertThat(r.disabledEqualsBefore()).isTrue();
        assertThat(r.weightsUnchanged()).isTrue();
        assertThat(r.weightTensorsCompared()).isEqualTo(6);

        long r1 = 1;
        long expectedLora = r1 * (784 + 1000) + r1 * (1000 + 2000) + r1 * (2000 + 10);
        assertThat(r.loraParams()).isEqualTo(expectedLora).isEqualTo(6794);
        assertThat(r.trainableParams()).isEqualTo(expectedLora);
        assertThat(r.originalParams()).isEqualTo(784L * 1000 + 1000 + 1000L * 2000 + 2000 + 2000L * 10 + 10);
        assertThat(r.trainableParametersLine())
                .isEqualTo("trainable params: 6,794 || all params: 2,813,804 || trainable%: 0.2415");

        assertThat(text).contains("first 1,000 train and 1,000 test")
                .contains(r.trainableParametersLine())
                .contains("<- fine-tuned")
                .contains("identical")
                .contains("Summary:");
        assertThat(text.strip().lines().reduce((a, b) -> b).orElseThrow()).startsWith("Summary:");
    }

    @Test
    void worstClassPicksHighestRateAndBreaksTiesLow() {
        int[] per = {10, 10, 20, 10, 10, 10, 10, 10, 10, 10};
        assertThat(FashionMnistDemo.worstClass(new int[] {1, 3, 5, 2, 0, 0, 0, 0, 0, 0}, per)).isEqualTo(1); // 30% beats 5 errors of 20
        assertThat(FashionMnistDemo.worstClass(new int[] {3, 3, 0, 0, 0, 0, 0, 0, 0, 0}, per)).isEqualTo(0);
    }
}
