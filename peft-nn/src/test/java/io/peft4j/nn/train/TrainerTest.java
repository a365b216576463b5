package io.peft4j.nn.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.Param;
import io.peft4j.nn.Torch;
import io.peft4j.nn.layers.Dropout;
import io.peft4j.nn.layers.LayerNorm;
import io.peft4j.nn.layers.Linear;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

class TrainerTest {
    NDManager nd;

    @BeforeEach
    void setUp() {
        nd = Torch.newManager();
    }

    @AfterEach
    void tearDown() {
        nd.close();
    }

    /** An MLP with dropout and a LayerNorm, so resuming must also reproduce the random masks. */
    static final class Net extends Module {
        Net(NDManager m) {
            registerModule("fc1", new Linear(m, 6, 12, true));
            registerModule("norm", new LayerNorm(m, 12, 1e-5));
            registerModule("drop", new Dropout(0.3));
            registerModule("fc2", new Linear(m, 12, 3, true));
        }

        @Override
        public NDArray forward(NDArray x) {
            return call("fc2", call("drop", F.relu(call("norm", call("fc1", x)))));
        }
    }

    record Row(float[] x, long y) {}

    static List<Row> rows(int n, long seed) {
        Random r = new Random(seed);
        List<Row> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            float[] x = new float[6];
            for (int j = 0; j < 6; j++) {
                x[j] = (float) r.nextGaussian();
            }
            out.add(new Row(x, x[0] + x[1] > 0 ? 1 : x[2] > 0.5 ? 2 : 0));
        }
        return out;
    }

    /** Builds a fresh net with fixed initial weights (seeded) and its trainer. */
    Trainer<Row> trainer(TrainingArguments args, List<TrainerCallback> callbacks) {
        Torch.manualSeed(5);
        Net net = new Net(nd);
        Trainer.Builder<Row> b = Trainer.<Row>builder().model(net).args(args).trainData(rows(40, 1))
                .evalData(rows(12, 2)).loss(batch -> loss(net, batch));
        callbacks.forEach(b::callback);
        return b.build();
    }

    static NDArray loss(Module net, List<Row> batch) {
        NDManager m = net.getParameter("fc1.weight").data().getManager();
        float[] xs = new float[batch.size() * 6];
        long[] ys = new long[batch.size()];
        for (int i = 0; i < batch.size(); i++) {
            System.arraycopy(batch.get(i).x(), 0, xs, i * 6, 6);
            ys[i] = batch.get(i).y();
        }
        return F.crossEntropy(net.forward(m.create(xs, new Shape(batch.size(), 6))), m.create(ys), -100);
    }

    static Map<String, float[]> weights(Trainer<?> t) {
        Map<String, float[]> out = new LinkedHashMap<>();
        t.trainableParameters().forEach((k, p) -> out.put(k, p.data().toFloatArray()));
        return out;
    }

    @Test
    void schedulesFollowTransformersFormulas() {
        // warm-up 10 of 110 steps
        assertThat(LrSchedule.LINEAR.factor(0, 10, 110)).isEqualTo(0.0);
        assertThat(LrSchedule.LINEAR.factor(5, 10, 110)).isEqualTo(0.5);
        assertThat(LrSchedule.LINEAR.factor(10, 10, 110)).isEqualTo(1.0);
        assertThat(LrSchedule.LINEAR.factor(60, 10, 110)).isEqualTo(0.5);
        assertThat(LrSchedule.LINEAR.factor(110, 10, 110)).isEqualTo(0.0);
        assertThat(LrSchedule.COSINE.factor(60, 10, 110)).isCloseTo(0.5, within(1e-12));
        assertThat(LrSchedule.COSINE.factor(35, 10, 110)).isCloseTo(0.8535533905932737, within(1e-12));
        assertThat(LrSchedule.COSINE.factor(110, 10, 110)).isCloseTo(0.0, within(1e-12));
        assertThat(LrSchedule.CONSTANT_WITH_WARMUP.factor(5, 10, 110)).isEqualTo(0.5);
        assertThat(LrSchedule.CONSTANT_WITH_WARMUP.factor(50, 10, 110)).isEqualTo(1.0);
        assertThat(LrSchedule.CONSTANT.factor(0, 10, 110)).isEqualTo(1.0);
        assertThat(LrSchedule.fromHfName("cosine")).isEqualTo(LrSchedule.COSINE);
        assertThatThrownBy(() -> LrSchedule.fromHfName("polynomial")).hasMessageContaining("polynomial");
        // HF: warmup_ratio 0.1 of 25 steps = ceil(2.5) = 3
        assertThat(TrainingArguments.builder().warmupRatio(0.1).build().warmupFor(25)).isEqualTo(3);
    }

    @Test
    void theLearningRateEachStepUsesIsTheScheduled(@TempDir Path dir) {
        List<Double> lrs = new ArrayList<>();
        TrainerCallback record = new TrainerCallback() {
            @Override
            public void onOptimizerStep(TrainerState s, Collection<Param> params) {
                lrs.add(s.lastLearningRate());
            }
        };
        // 40 rows / batch 8 = 5 steps per epoch, 2 epochs = 10 steps; warm-up 2
        trainer(TrainingArguments.builder().learningRate(0.1f).batchSize(8).numEpochs(2).warmupSteps(2).build(),
                List.of(record)).train();
        assertThat(lrs).hasSize(10);
        double[] expected = {0, 0.05, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125};
        for (int i = 0; i < 10; i++) {
            assertThat(lrs.get(i)).as("step %d", i).isCloseTo(expected[i], within(1e-7));
        }
    }

    @Test
    void resumingReproducesTheUninterruptedRun(@TempDir Path dir) {
        TrainingArguments args = TrainingArguments.builder().learningRate(0.05f).batchSize(4).gradientAccumulationSteps(2)
                .numEpochs(4).warmupSteps(3).weightDecay(0.01f).maxGradNorm(0.5f).saveSteps(10).loggingSteps(5)
                .outputDir(dir.resolve("run")).build();
        // 40 rows / 4 = 10 micro-batches = 5 steps per epoch, 20 steps in all
        Trainer<Row> full = trainer(args, List.of());
        assertThat(full.totalSteps()).isEqualTo(20);
        full.train();
        Map<String, float[]> uninterrupted = weights(full);
        Path checkpoint = dir.resolve("run").resolve("checkpoint-10");
        assertThat(checkpoint.resolve("trainable.safetensors")).isRegularFile();
        assertThat(checkpoint.resolve("optimizer.safetensors")).isRegularFile();
        assertThat(Trainer.latestCheckpoint(dir.resolve("run"))).isEqualTo(dir.resolve("run").resolve("checkpoint-20"));

        Trainer<Row> resumed = trainer(args.toBuilder().outputDir(dir.resolve("other")).build(), List.of());
        Map<String, float[]> initial = weights(resumed);
        resumed.train(checkpoint);
        assertThat(resumed.state().globalStep()).isEqualTo(20);
        Map<String, float[]> after = weights(resumed);
        for (String k : uninterrupted.keySet()) {
            assertThat(after.get(k)).as(k).isEqualTo(uninterrupted.get(k));
            assertThat(after.get(k)).as(k).isNotEqualTo(initial.get(k));
        }
        // the resumed run only did steps 11..20
        assertThat(resumed.state().logHistory().stream().filter(m -> m.containsKey("loss")).map(m -> m.get("step")))
                .containsExactly(5.0, 10.0, 15.0, 20.0);
    }

    @Test
    void accumulatingTwoBatchesOfFourEqualsOneBatchOfEight() {
        TrainingArguments base = TrainingArguments.builder().learningRate(0.05f).maxSteps(1).shuffle(false)
                .lrSchedule(LrSchedule.CONSTANT).maxGradNorm(0).build();
        Trainer<Row> eight = trainerWithoutDropout(base.toBuilder().batchSize(8).build());
        Trainer<Row> fourTwice = trainerWithoutDropout(base.toBuilder().batchSize(4).gradientAccumulationSteps(2).build());
        eight.train();
        fourTwice.train();
        Map<String, float[]> a = weights(eight);
        Map<String, float[]> b = weights(fourTwice);
        for (String k : a.keySet()) {
            float[] x = a.get(k);
            float[] y = b.get(k);
            for (int i = 0; i < x.length; i++) {
                assertThat(y[i]).as(k).isCloseTo(x[i], within(1e-6f));
            }
        }
        assertThat(fourTwice.state().lastGradNorm()).isCloseTo(eight.state().lastGradNorm(), within(1e-5));
    }

    private Trainer<Row> trainerWithoutDropout(TrainingArguments args) {
        Torch.manualSeed(5);
        Net net = new Net(nd);
        net.setChild("drop", new Dropout(0.0));
        return Trainer.<Row>builder().model(net).args(args).trainData(rows(40, 1)).loss(batch -> loss(net, batch)).build();
    }

    @Test
    void clippingScalesTheGradientToTheMaximumNorm() {
        // loss = w · (3, 4): the gradient is (3, 4), norm 5; clipped to 1 it is (0.6, 0.8)
        Module m = new Module() {
            {
                registerParameter("w", new Param(nd.create(new float[] {1f, 1f})));
            }
        };
        Param w = m.getParameter("w");
        NDArray x = nd.create(new float[] {3f, 4f});
        Trainer<Integer> t = Trainer.<Integer>builder().model(m).trainData(List.of(1))
                .args(TrainingArguments.builder().maxSteps(1).maxGradNorm(1f).learningRate(0.1f).build())
                .loss(batch -> w.data().mul(x).sum()).build();
        t.train();
        assertThat(t.state().lastGradNorm()).isCloseTo(5.0, within(1e-6));
        Map<String, NDArray> st = t.optimizer().stateDict(t.trainableParameters(), nd);
        // exp_avg after one step = (1 - beta1) * clipped gradient
        assertThat(st.get("w.exp_avg").toFloatArray()[0]).isCloseTo(0.1f * 0.6f, within(1e-6f));
        assertThat(st.get("w.exp_avg").toFloatArray()[1]).isCloseTo(0.1f * 0.8f, within(1e-6f));
        assertThat(st.get("w.step").toLongArray()).containsExactly(1L);
    }

    @Test
    void biasesAndNormsTakeNoWeightDecay() {
        Net net = new Net(nd);
        Map<String, Param> all = new LinkedHashMap<>(net.namedParameters());
        List<Param> noDecay = Trainer.noDecayParameters(net, all);
        assertThat(noDecay).containsExactlyInAnyOrder(all.get("fc1.bias"), all.get("norm.weight"), all.get("norm.bias"),
                all.get("fc2.bias"));
    }

    @Test
    void evaluationAndLogsReachCallbacksAndMemoryStaysFlat() {
        List<Map<String, Double>> evals = new ArrayList<>();
        List<Long> live = new ArrayList<>();
        TrainerCallback cb = new TrainerCallback() {
            @Override
            public void onEvaluate(TrainerState s, Map<String, Double> metrics) {
                evals.add(metrics);
            }

            @Override
            public void onStepEnd(TrainerState s) {
                live.add((long) nd.getManagedArrays().size());
            }
        };
        Trainer<Row> t = trainer(TrainingArguments.builder().learningRate(0.05f).batchSize(4).numEpochs(5).evalSteps(10)
                .loggingSteps(0).build(), List.of(cb));
        t.train();
        assertThat(evals).hasSize(5); // steps 10, 20, 30, 40, 50 (the last is also the end)
        assertThat(evals.get(4).get("eval_loss")).isLessThan(evals.get(0).get("eval_loss") * 1.2);
        assertThat(evals).allMatch(e -> Double.isFinite(e.get("eval_loss")));
        assertThat(live.get(live.size() - 1)).isEqualTo(live.get(2));
    }

    @Test
    void resumeRefusesACheckpointFromAnotherSetup(@TempDir Path dir) throws Exception {
        TrainingArguments args = TrainingArguments.builder().batchSize(4).maxSteps(4).saveSteps(2).outputDir(dir).build();
        trainer(args, List.of()).train();
        Path cp = dir.resolve("checkpoint-2");
        assertThatThrownBy(() -> trainer(args.toBuilder().batchSize(8).build(), List.of()).train(cp))
                .hasMessageContaining("batch_size").hasMessageContaining("trainer_state.json");
        assertThatThrownBy(() -> trainer(args, List.of()).train(dir.resolve("nope")))
                .hasMessageContaining("not a trainer checkpoint");
        Files.writeString(cp.resolve("trainable.safetensors"), "garbage");
        assertThatThrownBy(() -> trainer(args, List.of()).train(cp)).hasMessageContaining("trainable.safetensors");
    }
}
