package io.peft4j.nn.layers;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Init;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;

/** {@code torch.nn.Embedding}: {@code weight} is {@code (num_embeddings, embedding_dim)}, initialised N(0, 1). */
public class Embedding extends Module {
    private final long numEmbeddings;
    private final long embeddingDim;

    public Embedding(NDManager manager, long numEmbeddings, long embeddingDim) {
        this.numEmbeddings = numEmbeddings;
        this.embeddingDim = embeddingDim;
        Shape shape = new Shape(numEmbeddings, embeddingDim);
        NDArray deferred = Init.deferred(manager, shape);
        registerParameter("weight", deferred != null ? deferred : manager.randomNormal(0f, 1f, shape, DataType.FLOAT32));
    }

    public long numEmbeddings() {
        return numEmbeddings;
    }

    public long embeddingDim() {
        return embeddingDim;
    }

    public Param weight() {
        return param("weight");
    }

    @Override
    public NDArray forward(NDArray ids) {
        return F.embedding(ids, weight().data());
    }

    @Override
    public String extraRepr() {
        return numEmbeddings + ", " + embeddingDim;
    }
}
