package io.peft4j.nn.quant;

import io.peft4j.nn.safetensors.DType;
import io.peft4j.nn.safetensors.TensorData;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BnbFormatTest {

    static byte[] bytes(TensorData t) {
        java.nio.ByteBuffer b = t.bytes().duplicate();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    @Test
    void writesBitsandbytesTensorsAndReadsThemBack() {
        // the hand-computed double-quant example: absmax 1 and 3 -> offset 2, codes 0 and 255, nested absmax 1
        float[] w = new float[64];
        w[0] = 1f;
        w[32] = 3f;
        Quantizer.Packed p = Quantizer.quantize4bit(w, new long[] {2, 32}, "nf4", 32, true);
        Map<String, TensorData> t = BnbFormat.toTensors("l.weight", p);
        assertThat(t.keySet()).containsExactly("l.weight", "l.weight.absmax", "l.weight.quant_map",
                "l.weight.nested_absmax", "l.weight.nested_quant_map", "l.weight.quant_state.bitsandbytes__nf4");
        assertThat(t.get("l.weight").dtype()).isEqualTo(DType.U8);
        assertThat(t.get("l.weight").shape()).containsExactly(32, 1);
        assertThat(bytes(t.get("l.weight.absmax"))).containsExactly((byte) 0, (byte) 255);
        assertThat(new String(bytes(t.get("l.weight.quant_state.bitsandbytes__nf4")), StandardCharsets.UTF_8))
                .isEqualTo("{\"quant_type\": \"nf4\", \"blocksize\": 32, \"dtype\": \"float32\", \"shape\": [2, 32], "
                        + "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 2.0}");
        Quantizer.Packed back = BnbFormat.fromTensors("l.weight", t::get, new long[] {2, 32}, "x.safetensors");
        assertThat(back.data()).containsExactly(p.data());
        assertThat(back.state().absmaxFloat()).containsExactly(p.state().absmaxFloat());
        assertThat(back.state().offset()).isEqualTo(2f);
    }

    /** Expected strings: Python's {@code repr(struct.unpack('f', struct.pack('f', v))[0])}. */
    @Test
    void floatsArePrintedAsPythonDoes() {
        assertThat(BnbFormat.pythonFloat(2f)).isEqualTo("2.0");
        assertThat(BnbFormat.pythonFloat(0.5f)).isEqualTo("0.5");
        assertThat(BnbFormat.pythonFloat(1e-5f)).isEqualTo("9.999999747378752e-06");
        assertThat(BnbFormat.pythonFloat(0f)).isEqualTo("0.0");
        assertThat(BnbFormat.pythonFloat(3e20f)).isEqualTo("3.000000060122632e+20");
        assertThat(BnbFormat.pythonFloat(0.0123f)).isEqualTo("0.012299999594688416");
    }

    @Test
    void missingOrInconsistentTensorsAreNamed() {
        Quantizer.Packed p = Quantizer.quantize4bit(new float[128], new long[] {2, 64}, "nf4", 64, true);
        Map<String, TensorData> t = new HashMap<>(BnbFormat.toTensors("a.weight", p));
        Map<String, TensorData> noNested = new HashMap<>(t);
        noNested.remove("a.weight.nested_absmax");
        assertThatThrownBy(() -> BnbFormat.fromTensors("a.weight", noNested::get, new long[] {2, 64}, "f"))
                .hasMessage("f: tensor 'a.weight.nested_absmax' is missing");
        Map<String, TensorData> noState = new HashMap<>(t);
        noState.remove("a.weight.quant_state.bitsandbytes__nf4");
        assertThatThrownBy(() -> BnbFormat.fromTensors("a.weight", noState::get, new long[] {2, 64}, "f"))
                .hasMessageContaining("'a.weight' is a 4-bit weight without its quant_state");
        Map<String, TensorData> shortWeight = new HashMap<>(t);
        shortWeight.put("a.weight", TensorData.of(DType.U8, new long[] {10, 1}, new byte[10]));
        assertThatThrownBy(() -> BnbFormat.fromTensors("a.weight", shortWeight::get, new long[] {2, 64}, "f"))
                .hasMessageContaining("'a.weight' is U8 [10, 1], a 4-bit weight of shape [2, 64] needs U8 with 64 elements");
        assertThatThrownBy(() -> BnbFormat.fromTensors("a.weight", t::get, new long[] {4, 32}, "f"))
                .hasMessageContaining("has shape [2, 64], the model's a.weight is [4, 32]");
    }
}
