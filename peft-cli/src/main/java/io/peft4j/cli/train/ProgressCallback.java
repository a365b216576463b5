package io.peft4j.cli.train;

import io.peft4j.nn.train.TrainerCallback;
import io.peft4j.nn.train.TrainerState;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.io.PrintStream;
import java.util.Locale;
import java.util.Map;

/** A terminal progress bar over the optimizer steps showing loss, learning rate, tokens/s and the ETA. */
public final class ProgressCallback implements TrainerCallback {
    private final PrintStream out;
    private final String task;
    private ProgressBar bar;
    private long startNanos;
    private long startTokens;
    private long startStep;

    public ProgressCallback(PrintStream out, String task) {
        this.out = out;
        this.task = task;
    }

    @Override
    public void onTrainBegin(TrainerState s) {
        bar = new ProgressBarBuilder().setTaskName(task).setInitialMax(s.totalSteps()).setStyle(ProgressBarStyle.ASCII)
                .setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(out)).setUpdateIntervalMillis(500)
                .continuousUpdate().showSpeed().build();
        bar.stepTo(s.globalStep());
        startNanos = System.nanoTime();
        startTokens = s.tokensSeen();
        startStep = s.globalStep();
    }

    @Override
    public void onStepEnd(TrainerState s) {
        double secs = (System.nanoTime() - startNanos) / 1e9;
        double tps = secs > 0 ? (s.tokensSeen() - startTokens) / secs : 0;
        bar.setExtraMessage(String.format(Locale.ROOT, "loss %.4f lr %.2e %.0f tok/s", s.lastLoss(),
                s.lastLearningRate(), tps));
        bar.stepTo(s.globalStep());
    }

    @Override
    public void onEvaluate(TrainerState s, Map<String, Double> metrics) {
        Double l = metrics.get("eval_loss");
        if (l != null && bar != null) {
            bar.setExtraMessage(String.format(Locale.ROOT, "eval_loss %.4f", l));
        }
    }

    @Override
    public void onTrainEnd(TrainerState s) {
        if (bar != null) {
            bar.close();
            bar = null;
        }
        long steps = s.globalStep() - startStep;
        out.printf(Locale.ROOT, "%s: %d steps in %.1f s%n", task, steps, (System.nanoTime() - startNanos) / 1e9);
    }
}
