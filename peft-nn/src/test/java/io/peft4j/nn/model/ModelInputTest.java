package io.peft4j.nn.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.Torch;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

class ModelInputTest {
    @Test
    void tokenTypeIdsAreOptionalAndSurviveToBuilder() {
        try (NDManager nd = Torch.newManager()) {
            NDArray ids = nd.ones(new Shape(1, 3), DataType.INT64);
            NDArray types = nd.zeros(new Shape(1, 3), DataType.INT64);
            assertThat(ModelInput.of(ids).tokenTypeIds()).isNull();
            ModelInput in = ModelInput.builder().inputIds(ids).tokenTypeIds(types).build();
            assertThat(in.tokenTypeIds()).isSameAs(types);
            ModelInput copy = in.toBuilder().labels(ids).build();
            assertThat(copy.tokenTypeIds()).isSameAs(types);
            assertThat(copy.inputIds()).isSameAs(ids);
            assertThat(copy.labels()).isSameAs(ids);
        }
    }
}
