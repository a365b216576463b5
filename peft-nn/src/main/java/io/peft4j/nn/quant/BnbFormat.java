package io.peft4j.nn.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.peft4j.nn.safetensors.DType;
import io.peft4j.nn.safetensors.TensorData;

import java.io.IOException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The checkpoint layout transformers + bitsandbytes write for a 4-bit {@code Linear4bit} at path {@code P}
 * (bitsandbytes' {@code QuantState.as_dict(packed=True)}):
 * <ul>
 *   <li>{@code P.weight}: U8 {@code (ceil(n/2), 1)}, the packed codes, first element in the high nibble;</li>
 *   <li>{@code P.weight.absmax}: F32 {@code (blocks)}, or U8 8-bit codes when double-quantised;</li>
 *   <li>{@code P.weight.quant_map}: F32 {@code (16)}, the 4-bit code book;</li>
 *   <li>{@code P.weight.nested_absmax}: F32 {@code (ceil(blocks/nested_blocksize))} and
 *       {@code P.weight.nested_quant_map}: F32 {@code (256)} (double quantisation only);</li>
 *   <li>{@code P.weight.quant_state.bitsandbytes__nf4} (or {@code __fp4}): U8, the UTF-8 bytes of a JSON object
 *       {@code {"quant_type", "blocksize", "dtype", "shape"[, "nested_blocksize", "nested_dtype",
 *       "nested_offset"]}}.</li>
 * </ul>
 */
public final class BnbFormat {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String QS = ".quant_state.bitsandbytes__";

    private BnbFormat() {}

    /** The tensor-name suffixes (after {@code P.weight}) that belong to a 4-bit weight. */
    public static final List<String> SUFFIXES = List.of(".absmax", ".quant_map", ".nested_absmax",
            ".nested_quant_map", QS + "nf4", QS + "fp4");

    /** True when {@code name} is a quant-state tensor of some {@code P.weight} (not the packed weight itself). */
    public static boolean isQuantStateKey(String name) {
        for (String s : SUFFIXES) {
            if (name.endsWith(".weight" + s)) {
                return true;
            }
        }
        return false;
    }

    /** The tensors of one 4-bit weight under {@code weightKey} ({@code P.weight}), in bitsandbytes' order. */
    public static Map<String, TensorData> toTensors(String weightKey, Quantizer.Packed p) {
        QuantState s = p.state();
        Map<String, TensorData> out = new LinkedHashMap<>();
        out.put(weightKey, TensorData.of(DType.U8, new long[] {p.data().length, 1}, p.data()));
        if (s.nested()) {
            out.put(weightKey + ".absmax", TensorData.of(DType.U8, new long[] {s.absmaxCodes().length}, s.absmaxCodes()));
        } else {
            out.put(weightKey + ".absmax", TensorData.ofFloats(s.absmax(), s.absmax().length));
        }
        out.put(weightKey + ".quant_map", TensorData.ofFloats(s.code(), s.code().length));
        if (s.nested()) {
            out.put(weightKey + ".nested_absmax", TensorData.ofFloats(s.nestedAbsmax(), s.nestedAbsmax().length));
            out.put(weightKey + ".nested_quant_map", TensorData.ofFloats(s.nestedCode(), s.nestedCode().length));
        }
        byte[] json = quantStateJson(s).getBytes(StandardCharsets.UTF_8);
        out.put(weightKey + QS + s.quantType(), TensorData.of(DType.U8, new long[] {json.length}, json));
        return out;
    }

    /** The JSON bitsandbytes packs into the {@code quant_state} tensor ({@code json.dumps} spacing, its key order). */
    static String quantStateJson(QuantState s) {
        StringBuilder sb = new StringBuilder("{\"quant_type\": \"").append(s.quantType()).append("\", \"blocksize\": ")
                .append(s.blocksize()).append(", \"dtype\": \"").append(s.dtype()).append("\", \"shape\": [");
        for (int i = 0; i < s.shape().length; i++) {
            sb.append(i > 0 ? ", " : "").append(s.shape()[i]);
        }
        sb.append(']');
        if (s.nested()) {
            sb.append(", \"nested_blocksize\": ").append(s.nestedBlocksize()).append(", \"nested_dtype\": \"")
                    .append(s.nestedDtype()).append("\", \"nested_offset\": ").append(pythonFloat(s.offset()));
        }
        return sb.append('}').toString();
    }

    /** A float32 value as Python prints the double it widens to. */
    static String pythonFloat(float f) {
        double d = f;
        if (d == 0 || (Math.abs(d) >= 1e-4 && Math.abs(d) < 1e16)) {
            String plain = new BigDecimal(Double.toString(d)).toPlainString();
            return plain.contains(".") ? plain : plain + ".0";
        }
        String[] parts = Double.toString(d).split("E");
        String mant = parts[0].endsWith(".0") ? parts[0].substring(0, parts[0].length() - 2) : parts[0];
        int exp = Integer.parseInt(parts[1]);
        return mant + "e" + (exp < 0 ? "-" : "+") + String.format("%02d", Math.abs(exp));
    }

    /**
     * Reads and validates one 4-bit weight. {@code get} returns a tensor by name or null when absent.
     *
     * @param weightKey     {@code P.weight}
     * @param expectedShape the module's {@code [out, in]}
     * @param source        file or directory named in error messages
     */
    public static Quantizer.Packed fromTensors(String weightKey, Function<String, TensorData> get, long[] expectedShape,
                                               String source) {
        TensorData nf4 = get.apply(weightKey + QS + "nf4");
        TensorData fp4 = get.apply(weightKey + QS + "fp4");
        if (nf4 != null && fp4 != null) {
            throw bad(source, weightKey, "has both quant_state.bitsandbytes__nf4 and __fp4; expected exactly one");
        }
        if (nf4 == null && fp4 == null) {
            throw bad(source, weightKey, "is a 4-bit weight without its quant_state.bitsandbytes__nf4 (or __fp4) "
                    + "tensor");
        }
        String keyType = nf4 != null ? "nf4" : "fp4";
        String qsKey = weightKey + QS + keyType;
        TensorData qsTensor = nf4 != null ? nf4 : fp4;
        JsonNode qs;
        try {
            qs = JSON.readTree(new String(bytes(qsTensor), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw bad(source, qsKey, "does not hold a JSON quant state: " + e.getMessage());
        }
        if (qs == null || !qs.isObject()) {
            throw bad(source, qsKey, "does not hold a JSON object");
        }
        String quantType = requireField(qs, "quant_type", source, qsKey).asText();
        if (!quantType.equals(keyType)) {
            throw bad(source, qsKey, "says quant_type \"" + quantType + "\" but its key says " + keyType);
        }
        int blocksize = requireField(qs, "blocksize", source, qsKey).asInt();
        try {
            Quantizer.checkBlocksize(blocksize, source + ": " + qsKey);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
        String dtype = requireField(qs, "dtype", source, qsKey).asText();
        JsonNode shapeNode = requireField(qs, "shape", source, qsKey);
        long[] shape = new long[shapeNode.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = shapeNode.get(i).asLong();
        }
        if (!Arrays.equals(shape, expectedShape)) {
            throw bad(source, qsKey, "has shape " + Arrays.toString(shape) + ", the model's " + weightKey
                    + " is " + Arrays.toString(expectedShape));
        }
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        TensorData w = require(get, weightKey, source);
        if (w.dtype() != DType.U8 || w.numel() != (n + 1) / 2) {
            throw bad(source, weightKey, "is " + w.dtype() + " " + Arrays.toString(w.shape()) + ", a 4-bit weight of "
                    + "shape " + Arrays.toString(shape) + " needs U8 with " + (n + 1) / 2 + " elements");
        }
        long blocks = (n + blocksize - 1) / blocksize;
        float[] code = floats(require(get, weightKey + ".quant_map", source), weightKey + ".quant_map", 16, source);
        TensorData absmax = require(get, weightKey + ".absmax", source);
        boolean nested = qs.has("nested_blocksize") || get.apply(weightKey + ".nested_absmax") != null;
        if (absmax.numel() != blocks) {
            throw bad(source, weightKey + ".absmax", "has " + absmax.numel() + " values; blocksize " + blocksize
                    + " over " + n + " elements needs " + blocks);
        }
        if (!nested) {
            if (absmax.dtype() == DType.U8) {
                throw bad(source, weightKey + ".absmax", "is U8 (double-quantised) but there is no nested state");
            }
            float[] am = floats(absmax, weightKey + ".absmax", (int) blocks, source);
            return new Quantizer.Packed(bytes(w), new QuantState(quantType, blocksize, shape, dtype, code, am, null,
                    null, 0, null, null, 0f));
        }
        if (absmax.dtype() != DType.U8) {
            throw bad(source, weightKey + ".absmax", "is " + absmax.dtype() + "; a double-quantised absmax is U8");
        }
        int nestedBlocksize = requireField(qs, "nested_blocksize", source, qsKey).asInt();
        if (nestedBlocksize <= 0) {
            throw bad(source, qsKey, "has nested_blocksize " + nestedBlocksize);
        }
        float offset = (float) requireField(qs, "nested_offset", source, qsKey).asDouble();
        String nestedDtype = qs.path("nested_dtype").asText("float32");
        int nestedBlocks = (int) ((blocks + nestedBlocksize - 1) / nestedBlocksize);
        float[] nestedAbsmax = floats(require(get, weightKey + ".nested_absmax", source), weightKey + ".nested_absmax",
                nestedBlocks, source);
        float[] nestedCode = floats(require(get, weightKey + ".nested_quant_map", source),
                weightKey + ".nested_quant_map", 256, source);
        return new Quantizer.Packed(bytes(w), new QuantState(quantType, blocksize, shape, dtype, code, null,
                bytes(absmax), nestedAbsmax, nestedBlocksize, nestedCode, nestedDtype, offset));
    }

    private static JsonNode requireField(JsonNode qs, String field, String source, String key) {
        JsonNode v = qs.get(field);
        if (v == null || v.isNull()) {
            throw bad(source, key, "has no \"" + field + "\"");
        }
        return v;
    }

    private static TensorData require(Function<String, TensorData> get, String key, String source) {
        TensorData t = get.apply(key);
        if (t == null) {
            throw bad(source, key, "is missing");
        }
        return t;
    }

    private static float[] floats(TensorData t, String key, int expected, String source) {
        if (!t.dtype().isFloating()) {
            throw bad(source, key, "is " + t.dtype() + ", expected a floating-point tensor");
        }
        if (t.numel() != expected) {
            throw bad(source, key, "has " + t.numel() + " values, expected " + expected);
        }
        return t.toFloatArray();
    }

    private static byte[] bytes(TensorData t) {
        ByteBuffer b = t.bytes().duplicate().order(ByteOrder.LITTLE_ENDIAN);
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    private static IllegalArgumentException bad(String source, String key, String what) {
        return new IllegalArgumentException(source + ": tensor '" + key + "' " + what);
    }
}
