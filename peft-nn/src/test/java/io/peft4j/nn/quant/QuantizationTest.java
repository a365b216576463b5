package io.peft4j.nn.quant;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Embedding;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class QuantizationTest {
    static NDManager manager;

    @BeforeAll
    static void init() {
        Torch.manualSeed(9);
        manager = Torch.newManager();
    }

    @AfterAll
    static void close() {
        manager.close();
    }

    static final class Net extends Module {
        Net() {
            registerModule("emb", new Embedding(manager, 16, 64));
            registerModule("fc", new Linear(manager, 64, 32, true));
            registerModule("lora_A", new Linear(manager, 64, 4, false));
            registerModule("head", new Linear(manager, 32, 16, false));
            registerModule("tied", new Linear(manager, 64, 16, false));
            child("tied").setParam("weight", child("emb").param("weight"));
        }
    }

    @Test
    void quantisesLinearsButNotSkippedTiedOrAdapterOnesAndDequantisesBack() {
        Net net = new Net();
        float[] fcWeight = ((Linear) net.child("fc")).weight().data().toFloatArray();
        int n = Quantization.quantize(net, BitsAndBytesConfig.nf4().withSkipModules(List.of("head")));
        assertThat(n).isEqualTo(1);
        assertThat(net.child("fc")).isInstanceOf(Linear4bit.class);
        assertThat(net.child("head")).isInstanceOf(Linear.class);
        assertThat(net.child("lora_A")).isInstanceOf(Linear.class);
        assertThat(net.child("tied")).isInstanceOf(Linear.class); // shares the embedding's weight
        assertThat(Quantization.isQuantized(net)).isTrue();
        Linear4bit q = (Linear4bit) net.child("fc");
        long[] footprint = Quantization.quantizedWeightFootprint(net);
        assertThat(footprint[1]).isEqualTo(64 * 32);
        assertThat(footprint[0]).isEqualTo(q.weightBytes());
        float[] deq;
        try (NoGrad g = NoGrad.enter()) {
            deq = q.dequantize().toFloatArray();
        }
        double num = 0;
        double den = 0;
        for (int i = 0; i < deq.length; i++) {
            num += (deq[i] - fcWeight[i]) * (double) (deq[i] - fcWeight[i]);
            den += fcWeight[i] * (double) fcWeight[i];
        }
        assertThat(Math.sqrt(num / den)).isBetween(0.03, 0.15);

        assertThat(Quantization.dequantize(net)).isEqualTo(1);
        assertThat(net.child("fc")).isInstanceOf(Linear.class);
        assertThat(((Linear) net.child("fc")).weight().data().toFloatArray()).containsExactly(deq);
        assertThat(((Linear) net.child("fc")).bias()).isNotNull();
        assertThat(Quantization.isQuantized(net)).isFalse();
    }

    @Test
    void configValidatesItsFieldsAndMatchesSkipNamesLikeTransformers() {
        BitsAndBytesConfig c = BitsAndBytesConfig.nf4();
        assertThat(c.skips("lm_head")).isTrue();
        assertThat(c.skips("model.score")).isTrue();
        assertThat(c.skips("classifier.dense")).isTrue();
        assertThat(c.skips("model.layers.0.self_attn.q_proj")).isFalse();
        assertThat(c.skips("model.my_lm_head_x")).isFalse();
        assertThat(c.toJson().get("bnb_4bit_quant_type").asText()).isEqualTo("nf4");
        assertThat(c.toJson().get("llm_int8_skip_modules").isNull()).isTrue();
        assertThat(BitsAndBytesConfig.fromJson(c.toJson(), "config.json")).isEqualTo(c);
        assertThatThrownBy(() -> new BitsAndBytesConfig("nf4", true, 100, null)).hasMessageContaining("blocksize 100");
        assertThatThrownBy(() -> new BitsAndBytesConfig("int4", true, 64, null)).hasMessageContaining("int4");
        com.fasterxml.jackson.databind.node.ObjectNode eight = c.toJson();
        eight.put("load_in_4bit", false);
        eight.put("_load_in_4bit", false);
        assertThatThrownBy(() -> BitsAndBytesConfig.fromJson(eight, "dir/config.json"))
                .hasMessageContaining("dir/config.json").hasMessageContaining("not load_in_4bit");
        com.fasterxml.jackson.databind.node.ObjectNode gptq = c.toJson();
        gptq.put("quant_method", "gptq");
        assertThatThrownBy(() -> BitsAndBytesConfig.fromJson(gptq, "dir/config.json"))
                .hasMessageContaining("quant_method \"gptq\" is not supported");
    }
}
