package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;

/**
 * {@code torch.nn.LSTM(input_size, hidden_size, num_layers, dropout=p, bidirectional=..., batch_first=True)}:
 * parameters {@code weight_ih_l{k}[_reverse]} {@code [4H, in]}, {@code weight_hh_l{k}[_reverse]} {@code [4H, H]},
 * {@code bias_ih_l{k}[_reverse]}, {@code bias_hh_l{k}[_reverse]} {@code [4H]}, gates in PyTorch's order
 * (input, forget, cell, output), every tensor initialised uniform in {@code ±1/sqrt(H)} as PyTorch does.
 *
 * <p>{@link #forward} takes {@code [batch, seq, input_size]} and returns the last layer's outputs
 * {@code [batch, seq, directions * H]} (PyTorch's {@code output}, element 0 of its result), starting from zero
 * states. Between layers, dropout with probability {@code p} acts in training mode only. The recurrence is a
 * plain loop over time steps built from differentiable tensor ops, meant for the short sequences of prompt
 * encoders.
 */
public final class LSTM extends Module {
    private final long inputSize;
    private final long hiddenSize;
    private final int numLayers;
    private final boolean bidirectional;
    private final float dropout;

    public LSTM(NDManager manager, long inputSize, long hiddenSize, int numLayers, double dropout,
                boolean bidirectional) {
        if (inputSize <= 0 || hiddenSize <= 0 || numLayers <= 0) {
            throw new IllegalArgumentException("LSTM sizes must be positive: input_size=" + inputSize
                    + ", hidden_size=" + hiddenSize + ", num_layers=" + numLayers);
        }
        if (dropout < 0 || dropout >= 1) {
            throw new IllegalArgumentException("LSTM dropout must be in [0, 1), got " + dropout);
        }
        this.inputSize = inputSize;
        this.hiddenSize = hiddenSize;
        this.numLayers = numLayers;
        this.bidirectional = bidirectional;
        this.dropout = (float) dropout;
        float bound = (float) (1.0 / Math.sqrt(hiddenSize));
        int directions = bidirectional ? 2 : 1;
        for (int k = 0; k < numLayers; k++) {
            long in = k == 0 ? inputSize : hiddenSize * directions;
            for (int d = 0; d < directions; d++) {
                String sfx = "_l" + k + (d == 1 ? "_reverse" : "");
                registerParameter("weight_ih" + sfx, manager.randomUniform(-bound, bound, new Shape(4 * hiddenSize, in)));
                registerParameter("weight_hh" + sfx,
                        manager.randomUniform(-bound, bound, new Shape(4 * hiddenSize, hiddenSize)));
                registerParameter("bias_ih" + sfx, manager.randomUniform(-bound, bound, new Shape(4 * hiddenSize)));
                registerParameter("bias_hh" + sfx, manager.randomUniform(-bound, bound, new Shape(4 * hiddenSize)));
            }
        }
    }

    public long inputSize() {
        return inputSize;
    }

    public long hiddenSize() {
        return hiddenSize;
    }

    public int numLayers() {
        return numLayers;
    }

    public boolean bidirectional() {
        return bidirectional;
    }

    /** {@code [batch, seq, input_size]} to {@code [batch, seq, directions * hidden_size]}. */
    @Override
    public NDArray forward(NDArray x) {
        Shape s = x.getShape();
        if (s.dimension() != 3 || s.get(2) != inputSize) {
            throw new IllegalArgumentException("LSTM expects [batch, seq, " + inputSize + "], got " + s);
        }
        NDArray h = x;
        for (int k = 0; k < numLayers; k++) {
            if (k > 0) {
                h = F.dropout(h, dropout, isTraining());
            }
            NDArray fwd = direction(h, "_l" + k, false);
            h = bidirectional ? fwd.concat(direction(h, "_l" + k + "_reverse", true), 2) : fwd;
        }
        return h;
    }

    /** One direction of one layer over the whole sequence; outputs stay at their time positions. */
    private NDArray direction(NDArray x, String sfx, boolean reverse) {
        long batch = x.getShape().get(0);
        int seq = (int) x.getShape().get(1);
        NDArray wIh = param("weight_ih" + sfx).data();
        NDArray wHh = param("weight_hh" + sfx).data();
        NDArray bIh = param("bias_ih" + sfx).data();
        NDArray bHh = param("bias_hh" + sfx).data();
        // Input projections of every step at once: [B, T, 4H], then one [B, 4H] slice per step.
        NDList steps = F.linear(x, wIh, bIh).split(seq, 1);
        NDManager nd = x.getManager();
        NDArray hPrev = nd.zeros(new Shape(batch, hiddenSize), x.getDataType());
        NDArray cPrev = nd.zeros(new Shape(batch, hiddenSize), x.getDataType());
        NDArray[] out = new NDArray[seq];
        for (int i = 0; i < seq; i++) {
            int t = reverse ? seq - 1 - i : i;
            NDArray gates = steps.get(t).squeeze(1).add(F.linear(hPrev, wHh, bHh));
            NDList g = gates.split(4, 1);
            NDArray in = Activation.sigmoid(g.get(0));
            NDArray forget = Activation.sigmoid(g.get(1));
            NDArray cell = g.get(2).tanh();
            NDArray output = Activation.sigmoid(g.get(3));
            cPrev = forget.mul(cPrev).add(in.mul(cell));
            hPrev = output.mul(cPrev.tanh());
            out[t] = hPrev;
        }
        return NDArrays.stack(new NDList(out), 1);
    }

    @Override
    public String extraRepr() {
        return inputSize + ", " + hiddenSize + ", num_layers=" + numLayers + ", batch_first=True"
                + (dropout > 0 ? ", dropout=" + dropout : "") + (bidirectional ? ", bidirectional=True" : "");
    }
}
