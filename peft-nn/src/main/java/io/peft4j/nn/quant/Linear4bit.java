package io.peft4j.nn.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;
import io.peft4j.nn.layers.Conv1D;
import io.peft4j.nn.layers.Linear;

/**
 * A Linear layer whose frozen weight is stored in 4 bits (bitsandbytes' {@code Linear4bit}): {@code weight} is the
 * packed codes, {@code UINT8} of shape {@code (ceil(out*in/2), 1)} as bitsandbytes stores them, and the quant state
 * (absmax per block, or its double-quantised form, and the code books) lives in non-persistent buffers. Nothing in
 * full precision is kept: every forward dequantises the weight with DJL ops ({@code code[q] * absmax}) into a
 * temporary that the step's {@code NDScope} frees, then runs a float32 linear. The packed arrays never require grad.
 */
public class Linear4bit extends Module {
    private final long inFeatures;
    private final long outFeatures;
    private String quantType;
    private int blocksize;
    private String dtype;
    private boolean nested;
    private int nestedBlocksize;
    private String nestedDtype;
    private float offset;
    private boolean fromConv1D;

    /**
     * A layer holding already-quantised data.
     *
     * @param packed codes and quant state; the state's shape must be {@code [out, in]}
     * @param bias   float bias of length {@code out}, or null (the layer takes ownership as its {@code bias} Param)
     */
    public Linear4bit(NDManager manager, Quantizer.Packed packed, NDArray bias) {
        long[] shape = packed.state().shape();
        if (shape.length != 2) {
            throw new IllegalArgumentException("Linear4bit: quant_state shape must be [out, in], got "
                    + java.util.Arrays.toString(shape));
        }
        this.outFeatures = shape[0];
        this.inFeatures = shape[1];
        registerParameter("weight", new Param(uint8(manager, new byte[1], new Shape(1, 1)), false));
        setQuantized(manager, packed);
        if (bias != null) {
            if (bias.getShape().size() != outFeatures) {
                throw new IllegalArgumentException("Linear4bit: bias has shape " + bias.getShape() + ", expected ("
                        + outFeatures + ")");
            }
            registerParameter("bias", new Param(bias, false));
        }
    }

    /**
     * Quantises a float Linear (its weight is read, not closed: the caller drops the original). The bias Param is
     * shared with the new layer.
     */
    public static Linear4bit quantize(Linear linear, String quantType, int blocksize, boolean doubleQuant) {
        NDArray w = linear.weight().data();
        Linear4bit q = new Linear4bit(w.getManager(), new Quantizer.Packed(new byte[1], Quantizer.stateFor(
                new float[1], new long[] {1, 1}, quantType, blocksize, doubleQuant)), null, linear.inFeatures(),
                linear.outFeatures());
        if (!Init.isDeferred(w)) {
            // A deferred (never written) weight is not worth quantising: the checkpoint loader fills the layer.
            q.quantizeFrom(w);
        }
        if (linear.bias() != null) {
            q.registerParameter("bias", linear.bias());
        }
        return q;
    }

    /**
     * Quantises a GPT-2 {@link Conv1D} as transformers does: its {@code (in, out)} weight is transposed to a 4-bit
     * {@code (out, in)} weight, so the layer computes the same {@code x W + b}. The bias Param is shared.
     */
    public static Linear4bit quantize(Conv1D conv, String quantType, int blocksize, boolean doubleQuant) {
        NDArray w = conv.weight().data();
        Linear4bit q = new Linear4bit(w.getManager(), new Quantizer.Packed(new byte[1], Quantizer.stateFor(
                new float[1], new long[] {1, 1}, quantType, blocksize, doubleQuant)), null, conv.inFeatures(),
                conv.outFeatures());
        q.fromConv1D = true;
        if (!Init.isDeferred(w)) {
            try (NoGrad ignored = NoGrad.enter(); NDArray t = w.transpose()) {
                q.quantizeFrom(t);
            }
        }
        q.registerParameter("bias", conv.bias());
        return q;
    }

    /**
     * True when this layer replaced a GPT-2 Conv1D: float checkpoints store its weight {@code (in, out)}, and
     * {@link #toFloat()} gives a Conv1D back.
     */
    public boolean fromConv1D() {
        return fromConv1D;
    }

    /** Marks the layer as standing for a GPT-2 Conv1D (see {@link #fromConv1D()}). */
    public void setFromConv1D(boolean on) {
        this.fromConv1D = on;
    }

    /** A layer of another shape than {@code packed}'s, about to be filled by {@link #quantizeFrom}. */
    private Linear4bit(NDManager manager, Quantizer.Packed placeholder, NDArray bias, long in, long out) {
        this.outFeatures = out;
        this.inFeatures = in;
        registerParameter("weight", new Param(uint8(manager, new byte[1], new Shape(1, 1)), false));
        QuantState s = placeholder.state();
        this.quantType = s.quantType();
        this.blocksize = s.blocksize();
        this.dtype = s.dtype();
        this.nested = s.nested();
    }

    /**
     * Replaces the stored weight by the quantisation of {@code w} ({@code (out, in)}, any float type), with this
     * layer's quant type, block size and double quantisation, computed with DJL ops (the same codes and absmax as
     * {@link Quantizer#quantize4bit}); only the per-block absmax passes through Java for the double quantisation.
     */
    public void quantizeFrom(NDArray w) {
        if (w.getShape().size() != outFeatures * inFeatures) {
            throw new IllegalArgumentException("Linear4bit: cannot quantise a weight of shape " + w.getShape()
                    + " into [" + outFeatures + ", " + inFeatures + "]");
        }
        NDManager owner = weight().data().getManager();
        long n = outFeatures * inFeatures;
        long nb = (n + blocksize - 1) / blocksize;
        float[] code = QuantCodes.fourBit(quantType);
        Integer[] order = new Integer[16];
        for (int i = 0; i < 16; i++) {
            order[i] = i;
        }
        java.util.Arrays.sort(order, (a, b) -> Float.compare(code[a], code[b]));
        float[] sortedIndex = new float[16];
        for (int i = 0; i < 16; i++) {
            sortedIndex[i] = order[i];
        }
        NDArray packedCodes;
        float[] absmax;
        try (NoGrad ignored = NoGrad.enter(); ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
            scope.suppressNotUsedWarning();
            NDManager m = w.getManager();
            NDArray flat = w.toType(DataType.FLOAT32, false).reshape(-1);
            if (nb * blocksize != n) {
                flat = flat.concat(m.zeros(new Shape(nb * blocksize - n)));
            }
            NDArray blocks = flat.reshape(nb, blocksize);
            NDArray amax = blocks.abs().max(new int[] {1}, true);
            // an all-zero block divides by 1: its values stay 0 and take the code nearest 0
            NDArray safe = amax.add(amax.eq(0f).toType(DataType.FLOAT32, false));
            NDArray x = blocks.div(safe).reshape(-1);
            if (nb * blocksize != n) {
                x = x.get("0:" + n);
            }
            // rank among the sorted code values = number of midpoints strictly below x (ties go to the lower value)
            NDArray rank = m.zeros(x.getShape(), DataType.INT32);
            for (int i = 0; i < 15; i++) {
                float mid = (code[order[i]] + code[order[i + 1]]) / 2f;
                try (NDArray gt = x.gt(mid); NDArray one = gt.toType(DataType.INT32, false)) {
                    rank.addi(one); // in place: one rank array, not fifteen, per layer
                }
            }
            NDArray idx = F.embedding(rank, m.create(sortedIndex, new Shape(16, 1))).reshape(-1);
            if (n % 2 == 1) {
                idx = idx.concat(m.zeros(new Shape(1)));
            }
            NDArray pairs = idx.reshape(-1, 2);
            NDArray bytes = pairs.get(":, 0").mul(m.create(16f)).add(pairs.get(":, 1"));
            packedCodes = bytes.toType(DataType.INT32, false).toType(DataType.UINT8, false).reshape(-1, 1);
            packedCodes.attach(owner);
            ai.djl.ndarray.NDScope.unregister(packedCodes);
            absmax = amax.reshape(-1).toFloatArray();
        }
        QuantState s = Quantizer.stateFor(absmax, new long[] {outFeatures, inFeatures}, quantType, blocksize, nested);
        QuantState keepDtype = new QuantState(s.quantType(), s.blocksize(), s.shape(), dtype, s.code(), s.absmax(),
                s.absmaxCodes(), s.nestedAbsmax(), s.nestedBlocksize(), s.nestedCode(), s.nestedDtype(), s.offset());
        setState(owner, keepDtype);
        param("weight").setData(packedCodes);
    }

    /** Installs new packed data and quant state (the shape must stay {@code [out, in]}). */
    public final void setQuantized(NDManager manager, Quantizer.Packed packed) {
        QuantState s = packed.state();
        if (s.shape().length != 2 || s.shape()[0] != outFeatures || s.shape()[1] != inFeatures) {
            throw new IllegalArgumentException("Linear4bit: quant_state shape " + java.util.Arrays.toString(s.shape())
                    + " does not match the layer's [" + outFeatures + ", " + inFeatures + "]");
        }
        long n = s.numel();
        if (packed.data().length != (n + 1) / 2) {
            throw new IllegalArgumentException("Linear4bit: " + packed.data().length + " packed bytes for shape ["
                    + outFeatures + ", " + inFeatures + "], expected " + (n + 1) / 2);
        }
        Quantizer.checkBlocksize(s.blocksize(), "Linear4bit");
        setState(manager, s);
        param("weight").setData(uint8(manager, packed.data(), new Shape(packed.data().length, 1)));
    }

    private void setState(NDManager manager, QuantState s) {
        this.quantType = s.quantType();
        this.blocksize = s.blocksize();
        this.dtype = s.dtype();
        this.nested = s.nested();
        this.nestedBlocksize = s.nestedBlocksize();
        this.nestedDtype = s.nestedDtype();
        this.offset = s.offset();
        setBuffer("quant_map", manager.create(s.code()));
        if (nested) {
            setBuffer("absmax", uint8(manager, s.absmaxCodes(), new Shape(s.absmaxCodes().length)));
            setBuffer("nested_absmax", manager.create(s.nestedAbsmax()));
            setBuffer("nested_quant_map", manager.create(s.nestedCode()));
        } else {
            setBuffer("absmax", manager.create(s.absmax()));
            dropBuffer("nested_absmax");
            dropBuffer("nested_quant_map");
        }
    }

    /** A {@code UINT8} array of raw bytes ({@code manager.create(byte[])} would make INT8). */
    static NDArray uint8(NDManager manager, byte[] bytes, Shape shape) {
        java.nio.ByteBuffer buf = manager.allocateDirect(bytes.length);
        buf.put(bytes);
        buf.rewind();
        return manager.create(buf, shape, DataType.UINT8);
    }

    private void setBuffer(String name, NDArray data) {
        if (buffers().containsKey(name)) {
            buffer(name).setData(data);
        } else {
            registerBuffer(name, data, false);
        }
    }

    private void dropBuffer(String name) {
        if (buffers().containsKey(name)) {
            buffer(name).data().close();
            removeBuffer(name);
        }
    }

    public long inFeatures() {
        return inFeatures;
    }

    public long outFeatures() {
        return outFeatures;
    }

    public String quantType() {
        return quantType;
    }

    public int blocksize() {
        return blocksize;
    }

    public boolean doubleQuant() {
        return nested;
    }

    /** The packed codes (frozen, {@code UINT8 (ceil(n/2), 1)}). */
    public Param weight() {
        return param("weight");
    }

    public Param bias() {
        return paramOrNull("bias");
    }

    /** Bytes held for the weight: packed codes, absmax (and nested state), code books ({@code quant_map}, 64 bytes). */
    public long weightBytes() {
        long bytes = weight().data().getShape().size();
        for (Param p : buffers().values()) {
            bytes += p.data().getShape().size() * p.data().getDataType().getNumOfBytes();
        }
        return bytes;
    }

    /** The absmax of each block as float32 {@code (blocks)}, in DJL ops. */
    private NDArray absmaxFloat() {
        NDArray am = buffer("absmax").data();
        if (!nested) {
            return am;
        }
        long blocks = am.getShape().size();
        NDArray vals = F.embedding(am.toType(DataType.INT32, false), buffer("nested_quant_map").data().reshape(-1, 1))
                .reshape(-1);
        NDArray scales = buffer("nested_absmax").data();
        long nb = scales.getShape().size();
        NDArray scaled = scaleBlocks(vals, scales, nestedBlocksize, nb, blocks);
        return F.add(scaled, offset);
    }

    /** {@code vals[i] * scales[i / bs]} for {@code i < n} ({@code scales} has {@code nb = ceil(n / bs)} entries). */
    private static NDArray scaleBlocks(NDArray vals, NDArray scales, int bs, long nb, long n) {
        if (n == nb * bs) {
            return vals.reshape(nb, bs).mul(scales.reshape(nb, 1)).reshape(-1);
        }
        NDArray pad = vals.getManager().zeros(new Shape(nb * bs - n), vals.getDataType());
        return vals.concat(pad).reshape(nb, bs).mul(scales.reshape(nb, 1)).reshape(-1).get("0:" + n);
    }

    /**
     * The weight as float32 {@code (out, in)}, computed with DJL ops: each byte looks up its pair of code values
     * (high nibble first), times the absmax of its block. The result belongs to the current scope.
     */
    public NDArray dequantize() {
        NDArray packed = weight().data();
        long n = outFeatures * inFeatures;
        NDArray w;
        // the int32 indices, code pairs and block scales are freed here, not at the end of the step
        try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray pairs = F.embedding(packed.reshape(-1).toType(DataType.INT32, false),
                    codePairs(packed.getManager()));
            NDArray vals = pairs.reshape(-1);
            if (vals.getShape().size() != n) {
                vals = vals.get("0:" + n);
            }
            NDArray scales = absmaxFloat();
            long nb = scales.getShape().size();
            w = scaleBlocks(vals, scales, blocksize, nb, n).reshape(outFeatures, inFeatures);
            ai.djl.ndarray.NDScope.unregister(w);
        }
        ai.djl.ndarray.NDScope.register(w);
        return w;
    }

    private static final int[] HIGH = new int[256];
    private static final int[] LOW = new int[256];

    static {
        for (int b = 0; b < 256; b++) {
            HIGH[b] = b >>> 4;
            LOW[b] = b & 15;
        }
    }

    /**
     * {@code (256, 2)}: for each byte value, the code values of its high and low nibble (built per call from the
     * 16-value code book, so no per-layer table is stored).
     */
    private NDArray codePairs(NDManager m) {
        NDArray code = buffer("quant_map").data().reshape(16, 1);
        NDArray hi = F.embedding(m.create(HIGH), code);
        NDArray lo = F.embedding(m.create(LOW), code);
        return hi.concat(lo, 1);
    }

    /** The codes and quant state as Java arrays (for saving and re-quantising). */
    public Quantizer.Packed toPacked() {
        byte[] data = weight().data().toByteArray();
        long[] shape = {outFeatures, inFeatures};
        float[] code = buffer("quant_map").data().toFloatArray();
        QuantState s = nested
                ? new QuantState(quantType, blocksize, shape, dtype, code, null, buffer("absmax").data().toByteArray(),
                        buffer("nested_absmax").data().toFloatArray(), nestedBlocksize,
                        buffer("nested_quant_map").data().toFloatArray(), nestedDtype, offset)
                : new QuantState(quantType, blocksize, shape, dtype, code, buffer("absmax").data().toFloatArray(),
                        null, null, 0, null, null, 0f);
        return new Quantizer.Packed(data, s);
    }

    /**
     * Replaces the stored weight by the quantisation of {@code w} ({@code (out, in)} float), with this layer's quant
     * type, block size and double quantisation. Lossy: used by merging.
     */
    public void requantize(NDArray w) {
        quantizeFrom(w);
    }

    /**
     * The float module this layer stands for, with the dequantised weight and a copy of the bias: a GPT-2 Conv1D
     * (weight {@code (in, out)}) when it was one, else a {@link Linear}.
     */
    public Module toFloat() {
        if (!fromConv1D) {
            return toLinear();
        }
        NDManager m = weight().data().getManager();
        Conv1D conv = new Conv1D(m, inFeatures, outFeatures);
        try (NoGrad ignored = NoGrad.enter()) {
            NDArray w = dequantize();
            conv.weight().setData(w.transpose().reshape(inFeatures, outFeatures).duplicate());
            w.close();
            conv.bias().setData(bias() != null ? bias().data().duplicate() : m.zeros(new Shape(outFeatures)));
        }
        conv.train(isTraining());
        return conv;
    }

    /** A float {@link Linear} with the dequantised weight and a copy of the bias (merging into full precision). */
    public Linear toLinear() {
        NDManager m = weight().data().getManager();
        Linear lin = new Linear(m, inFeatures, outFeatures, bias() != null);
        try (NoGrad ignored = NoGrad.enter()) {
            NDArray w = dequantize();
            lin.weight().setData(w);
            if (bias() != null) {
                lin.bias().setData(bias().data().duplicate());
            }
        }
        lin.train(isTraining());
        return lin;
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray w = dequantize();
        Param b = bias();
        NDArray y = F.linear(x, w, b == null ? null : b.data());
        // Freed right away: in inference nothing else uses it; in training autograd holds its own reference for the
        // backward pass and releases it with the graph.
        ai.djl.ndarray.NDScope.unregister(w);
        w.close();
        return y;
    }

    @Override
    public String extraRepr() {
        return "in_features=" + inFeatures + ", out_features=" + outFeatures + ", bias=" + (bias() != null)
                + ", quant_type=" + quantType + ", blocksize=" + blocksize + ", double_quant=" + nested
                + (fromConv1D ? ", from=Conv1D" : "");
    }
}
