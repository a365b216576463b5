package io.peft4j.tuners.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.InitLoraWeights;
import io.peft4j.nn.F;
import io.peft4j.nn.Identity;
import io.peft4j.nn.Module;
import io.peft4j.nn.ModuleDict;
import io.peft4j.nn.Param;
import io.peft4j.nn.ParameterDict;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.Embedding;

import java.util.List;

/**
 * LoRA around an {@link Embedding}: {@code y = base(ids) + (A^T[ids] @ B^T) * scaling}, with
 * {@code lora_embedding_A: (r, num_embeddings)} and {@code lora_embedding_B: (embedding_dim, r)} held as bare
 * parameters (saved as {@code ...lora_embedding_A} without a {@code .weight} suffix). No dropout on this path,
 * as in peft (the dropout module exists only so the layer looks like peft's).
 */
public final class LoraEmbedding extends LoraLayer {
    private final long numEmbeddings;
    private final long embeddingDim;

    public LoraEmbedding(Module baseLayer) {
        super(baseLayer);
        Shape s = baseLayer.param("weight").shape();
        this.numEmbeddings = s.get(0);
        this.embeddingDim = s.get(1);
        registerModule("lora_dropout", new ModuleDict());
        registerModule("lora_embedding_A", new ParameterDict());
        registerModule("lora_embedding_B", new ParameterDict());
    }

    /** True if LoRA can wrap this module as an embedding. */
    public static boolean supports(Module m) {
        return m instanceof Embedding;
    }

    private ParameterDict dict(String name) {
        return (ParameterDict) child(name);
    }

    /** Adds (or replaces) an adapter and initialises it: A zeros and B normal, or both left random for false. */
    public void updateLayer(String adapter, int r, double alpha, double dropout, InitLoraWeights init,
                            boolean useRslora, boolean withLoraBias) {
        if (r <= 0) {
            throw new IllegalArgumentException("`r` should be a positive integer value but the value passed is " + r);
        }
        if (withLoraBias) {
            throw new IllegalArgumentException("lora_bias=True is not supported for Embedding (peft rejects it too)");
        }
        NDManager m = baseLayer().param("weight").data().getManager();
        ModuleDict drop = (ModuleDict) child("lora_dropout");
        drop.put(adapter, dropout > 0 ? new Dropout(dropout) : new Identity());
        NDArray a = m.randomNormal(0f, 1f, new Shape(r, numEmbeddings), DataType.FLOAT32);
        NDArray b = m.randomNormal(0f, 1f, new Shape(embeddingDim, r), DataType.FLOAT32);
        // lora_ga needs a weight gradient; on an Embedding peft falls back to the default init, and so do we
        if (init != null && init.isString() && !"gaussian".equals(init.name()) && !"lora_ga".equals(init.name())) {
            throw new UnsupportedOperationException("init_lora_weights=\"" + init.name()
                    + "\" is not supported yet by peft4j (supported: true, false, \"gaussian\")");
        }
        if (init != null && !init.isFalse()) {
            // peft: zeros for A, normal for B, so the adapter starts as the identity (true and "gaussian" alike).
            a.close();
            a = m.zeros(new Shape(r, numEmbeddings));
        }
        replace(dict("lora_embedding_A"), adapter, a);
        replace(dict("lora_embedding_B"), adapter, b);
        ranks.put(adapter, r);
        scaling.put(adapter, useRslora ? alpha / Math.sqrt(r) : alpha / r);
    }

    private static void replace(ParameterDict d, String adapter, NDArray data) {
        Param old = d.remove(adapter);
        if (old != null) {
            old.data().close();
        }
        d.put(adapter, data, true);
    }

    @Override
    public Param loraA(String adapter) {
        return dict("lora_embedding_A").get(adapter);
    }

    @Override
    public Param loraB(String adapter) {
        return dict("lora_embedding_B").get(adapter);
    }

    @Override
    protected boolean hasAdapter(String adapter) {
        return dict("lora_embedding_A").containsKey(adapter);
    }

    @Override
    public NDArray forward(NDArray ids) {
        boolean bypass = bypassAdapters();
        NDArray result = baseLayer().forward(ids);
        if (bypass) {
            return result;
        }
        List<String> rows = io.peft4j.tuners.MixedBatch.current();
        for (String adapter : rows == null ? activeAdapters() : rows.stream().distinct().toList()) {
            if (!hasAdapter(adapter)) {
                continue;
            }
            NDArray a = dict("lora_embedding_A").get(adapter).data();
            NDArray b = dict("lora_embedding_B").get(adapter).data();
            NDArray afterA = F.embedding(ids, a.transpose());
            NDArray delta = F.mul(afterA, scaling.get(adapter).floatValue()).matMul(b.transpose());
            if (rows != null) {
                delta = delta.mul(io.peft4j.tuners.MixedBatch.rowMask(ids.getManager(), adapter,
                        delta.getShape().dimension()));
            }
            result = result.add(delta);
        }
        return result;
    }

    /** {@code (B @ A)^T * scaling}, shaped {@code (num_embeddings, embedding_dim)} like the base weight. */
    @Override
    public NDArray deltaWeight(String adapter) {
        NDArray a = dict("lora_embedding_A").get(adapter).data();
        NDArray b = dict("lora_embedding_B").get(adapter).data();
        return b.matMul(a).transpose().mul(scaling.get(adapter).floatValue());
    }
}
