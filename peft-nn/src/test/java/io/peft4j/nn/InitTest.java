package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

class InitTest {
    private final NDManager nd = Torch.newManager();

    @AfterEach
    void close() {
        nd.close();
    }

    @Test
    void layersBuiltInADeferralAreRecordedUntilTheCheckpointReplacesThem() {
        Sequential model;
        Init.Deferral d = Init.defer();
        try {
            model = new Sequential(new Linear(nd, 4, 3, true), new Embedding(nd, 5, 2));
            assertThat(Init.isDeferred(model.getParameter("0.weight").data())).isTrue();
        } finally {
            d.close();
        }
        // Closed: new layers initialise as usual, and isDeferred only answers for open scopes.
        assertThat(Init.isDeferred(model.getParameter("0.weight").data())).isFalse();
        assertThat(Init.deferred(nd, new ai.djl.ndarray.types.Shape(2))).isNull();
        assertThat(d.remaining(model)).containsExactly("0.weight", "0.bias", "1.weight");

        NDArray w = nd.ones(new ai.djl.ndarray.types.Shape(3, 4));
        model.loadStateDict(Map.of("0.weight", w), false);
        assertThat(d.remaining(model)).containsExactly("0.bias", "1.weight");
        assertThat(model.getParameter("0.weight").data().toFloatArray()).containsOnly(1f);
    }

    @Test
    void withoutADeferralLayersAreRandomlyInitialised() {
        Linear l = new Linear(nd, 8, 8, true);
        float[] w = l.weight().data().toFloatArray();
        float bound = (float) (1 / Math.sqrt(8));
        Float[] boxed = toBoxed(w);
        assertThat(boxed).allSatisfy(v -> assertThat(Math.abs(v)).isLessThanOrEqualTo(bound));
        assertThat(new java.util.HashSet<>(java.util.Arrays.asList(boxed))).hasSizeGreaterThan(32);
    }

    @Test
    void nestedDeferralsRestoreTheOuterOne() {
        try (Init.Deferral outer = Init.defer()) {
            NDArray a = Init.deferred(nd, new ai.djl.ndarray.types.Shape(2));
            try (Init.Deferral inner = Init.defer()) {
                NDArray b = Init.deferred(nd, new ai.djl.ndarray.types.Shape(2));
                assertThat(inner.isDeferred(b)).isTrue();
                assertThat(outer.isDeferred(b)).isFalse();
                assertThat(Init.isDeferred(a)).isTrue();
            }
            assertThat(Init.deferred(nd, new ai.djl.ndarray.types.Shape(2))).isNotNull();
            assertThat(outer.isDeferred(a)).isTrue();
        }
        assertThat(Init.deferred(nd, new ai.djl.ndarray.types.Shape(2))).isNull();
    }

    private static Float[] toBoxed(float[] a) {
        Float[] out = new Float[a.length];
        for (int i = 0; i < a.length; i++) {
            out[i] = a[i];
        }
        return out;
    }
}
