package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ModuleTest {
    static NDManager manager;

    @BeforeAll
    static void init() {
        manager = Torch.newManager();
    }

    @AfterAll
    static void close() {
        manager.close();
    }

    static final class Block extends Module {
        Block() {
            ModuleList layers = registerModule("layers", new ModuleList());
            for (int i = 0; i < 2; i++) {
                Module attn = layers.add(new Holder());
                attn.setChild("q_proj", new Linear(manager, 4, 4, false));
            }
            registerModule("lm_head", new Linear(manager, 4, 3, true));
        }
    }

    static final class Holder extends Module {}

    @Test
    void namesFollowRegistrationOrderWithDottedPaths() {
        Block b = new Block();
        assertThat(b.namedModules().keySet())
                .containsExactly("", "layers", "layers.0", "layers.0.q_proj", "layers.1", "layers.1.q_proj", "lm_head");
        assertThat(b.namedParameters().keySet())
                .containsExactly("layers.0.q_proj.weight", "layers.1.q_proj.weight", "lm_head.weight", "lm_head.bias");
        assertThat(b.numParameters()).isEqualTo(16 + 16 + 12 + 3);
    }

    @Test
    void replacedChildIsSeenByPathLookups() {
        Block b = new Block();
        Linear replacement = new Linear(manager, 4, 4, true);
        b.setSubmodule("layers.1.q_proj", replacement);
        assertThat(b.getSubmodule("layers.1.q_proj")).isSameAs(replacement);
        assertThat(b.namedParameters()).containsKey("layers.1.q_proj.bias");
        assertThatThrownBy(() -> b.getSubmodule("layers.7.q_proj"))
                .hasMessageContaining("'layers' has no child '7'");
        assertThatThrownBy(() -> b.setSubmodule("layers.0.k_proj", replacement))
                .hasMessageContaining("layers.0.k_proj");
    }

    @Test
    void sharedParameterIsCountedOnceButStoredUnderBothNames() {
        Block b = new Block();
        Module l0 = b.getSubmodule("layers.0.q_proj");
        Module l1 = b.getSubmodule("layers.1.q_proj");
        l1.setParam("weight", l0.param("weight"));
        assertThat(b.namedParameters()).doesNotContainKey("layers.1.q_proj.weight");
        assertThat(b.stateDict()).containsKeys("layers.0.q_proj.weight", "layers.1.q_proj.weight");
    }

    @Test
    void loadStateDictReportsMissingAndUnexpectedAndChecksShapes() {
        Block b = new Block();
        Map<String, NDArray> sd = new LinkedHashMap<>();
        sd.put("lm_head.weight", manager.ones(new Shape(3, 4)));
        sd.put("extra.weight", manager.ones(new Shape(1)));
        Module.LoadResult r = b.loadStateDict(sd, false);
        assertThat(r.unexpectedKeys()).containsExactly("extra.weight");
        assertThat(r.missingKeys()).contains("lm_head.bias", "layers.0.q_proj.weight");
        assertThat(b.getParameter("lm_head.weight").data().sum().getFloat()).isEqualTo(12f);

        assertThatThrownBy(() -> b.loadStateDict(sd, true)).hasMessageContaining("extra.weight");
        Map<String, NDArray> bad = Map.of("lm_head.weight", manager.ones(new Shape(4, 3)));
        assertThatThrownBy(() -> b.loadStateDict(bad, false))
                .hasMessageContaining("lm_head.weight").hasMessageContaining("(4, 3)").hasMessageContaining("(3, 4)");
    }

    @Test
    void trainFlagPropagates() {
        Block b = new Block();
        b.eval();
        assertThat(b.getSubmodule("layers.0.q_proj").isTraining()).isFalse();
        b.train(true);
        assertThat(b.getSubmodule("lm_head").isTraining()).isTrue();
    }
}
