package io.peft4j.tuners.adalora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import io.peft4j.config.AdaLoraConfig;
import io.peft4j.nn.F;
import io.peft4j.nn.Module;
import io.peft4j.nn.NoGrad;
import io.peft4j.nn.Param;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdaLoRA's rank budget (peft's {@code RankAllocator}): a smoothed sensitivity {@code Ī} and uncertainty {@code Ū} of
 * every adapter element ({@code I = |p ⊙ ∇p|}), a cubic budget schedule, and masking of the singular values whose
 * triplet score {@code S_i = s(E_i) + mean_j s(A_ij) + mean_k s(B_ki)}, {@code s = Ī ⊙ Ū}, is among the
 * {@code init_bgt - budget} lowest. Its state lives in its own manager and is updated in place, so a training loop
 * that calls it every step keeps flat memory.
 */
public final class RankAllocator implements AutoCloseable {
    private final Module model;
    private final String adapter;
    private final double beta1;
    private final double beta2;
    private final int initBgt;
    private final int targetBgt;
    private final NDManager manager;
    private final Map<String, NDArray> expAvgIpt = new HashMap<>();
    private final Map<String, NDArray> expAvgUnc = new HashMap<>();

    /** A budget and whether this step masks. */
    public record Budget(int budget, boolean mask) {}

    /**
     * @param model the tuner's wrapped model; parameter names are taken relative to it, as peft's are
     */
    public RankAllocator(Module model, AdaLoraConfig config, String adapter, NDManager parent) {
        if (!(config.beta1() > 0 && config.beta1() < 1) || !(config.beta2() > 0 && config.beta2() < 1)) {
            throw new IllegalArgumentException("AdaLoRA needs 0 < beta1, beta2 < 1; got beta1=" + config.beta1()
                    + ", beta2=" + config.beta2());
        }
        this.model = model;
        this.adapter = adapter;
        this.beta1 = config.beta1();
        this.beta2 = config.beta2();
        int init = 0;
        int matrices = 0;
        for (SVDLinear layer : layers().values()) {
            init += (int) layer.loraA(adapter).shape().get(0);
            matrices++;
        }
        this.initBgt = init;
        this.targetBgt = config.targetR() * matrices;
        this.manager = parent.newSubManager();
    }

    /** Σ of the adapted matrices' ranks when the allocator was made. */
    public int initBudget() {
        return initBgt;
    }

    /** {@code target_r} × the number of adapted matrices. */
    public int targetBudget() {
        return targetBgt;
    }

    /** The wrapped layers holding this adapter, by path relative to the model. */
    private Map<String, SVDLinear> layers() {
        Map<String, SVDLinear> out = new LinkedHashMap<>();
        model.namedModules().forEach((k, m) -> {
            if (m instanceof SVDLinear s && s.adapterNames().contains(adapter)) {
                out.put(k, s);
            }
        });
        return out;
    }

    /**
     * Full budget up to {@code tinit}, the target after {@code total_step - tfinal}, in between
     * {@code int((init - target)·(1 - (step - tinit)/(total - tfinal - tinit))³ + target)}, masking every
     * {@code deltaT} steps.
     */
    public Budget budgetSchedule(int step, AdaLoraConfig c) {
        int total = requireTotalStep(c);
        if (step <= c.tinit()) {
            return new Budget(initBgt, false);
        }
        if (step > total - c.tfinal()) {
            return new Budget(targetBgt, true);
        }
        double coeff = 1 - (double) (step - c.tinit()) / (total - c.tfinal() - c.tinit());
        int budget = (int) ((initBgt - targetBgt) * (coeff * coeff * coeff) + targetBgt);
        return new Budget(budget, step % c.deltaT() == 0);
    }

    static int requireTotalStep(AdaLoraConfig c) {
        if (c.totalStep() == null) {
            throw new IllegalStateException("AdaLoRA's rank allocation needs total_step in the AdaLoraConfig (the "
                    + "number of training steps); it is null");
        }
        return c.totalStep();
    }

    /**
     * peft's {@code update_ipt}: for every adapter tensor with a gradient, {@code Ī ← β1·Ī + (1-β1)·I} and then
     * {@code Ū ← β2·Ū + (1-β2)·|I - Ī|} with the updated {@code Ī}.
     */
    public void updateIpt() {
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            for (Map.Entry<String, Param> e : model.namedParameters().entrySet()) {
                String n = e.getKey();
                Param p = e.getValue();
                // peft reads p.grad of every "lora_" tensor whose name contains the adapter name; frozen ones have none.
                if (!n.contains("lora_") || !n.contains(adapter) || !p.requiresGrad()) {
                    continue;
                }
                NDArray ipt = p.data().mul(p.data().getGradient()).abs();
                NDArray avg = state(expAvgIpt, n, p.shape());
                NDArray unc = state(expAvgUnc, n, p.shape());
                avg.muli(F.scalar(avg, (float) beta1)).addi(F.mul(ipt, (float) (1 - beta1)));
                unc.muli(F.scalar(unc, (float) beta2)).addi(F.mul(ipt.sub(avg).abs(), (float) (1 - beta2)));
            }
        }
    }

    private NDArray state(Map<String, NDArray> map, String name, Shape shape) {
        NDArray a = map.get(name);
        if (a == null || !a.getShape().equals(shape)) {
            if (a != null) {
                a.close();
            }
            a = manager.zeros(shape);
            // Created inside the caller's step scope, but it must outlive it.
            NDScope.unregister(a);
            map.put(name, a);
        }
        return a;
    }

    /** Forgets the smoothed scores (peft does this once the budget is final). */
    public void resetIpt() {
        expAvgIpt.values().forEach(NDArray::close);
        expAvgUnc.values().forEach(NDArray::close);
        expAvgIpt.clear();
        expAvgUnc.clear();
    }

    /**
     * peft's {@code mask_to_budget}: zero the {@code E} entries whose triplet score is {@code <=} the
     * {@code (init_bgt - budget)}-th smallest score ({@code torch.kthvalue}); returns which ranks are kept, keyed by
     * the {@code lora_E} parameter name ({@code <path>.lora_E.<adapter>}).
     */
    public Map<String, List<Boolean>> maskToBudget(int budget) {
        Map<String, float[]> scores = new LinkedHashMap<>();
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            for (Map.Entry<String, SVDLinear> e : layers().entrySet()) {
                String base = e.getKey() + ".";
                SVDLinear layer = e.getValue();
                NDArray sA = score(base + "lora_A." + adapter, layer.loraA(adapter));
                NDArray sB = score(base + "lora_B." + adapter, layer.loraB(adapter));
                NDArray sE = score(base + "lora_E." + adapter, layer.loraE(adapter));
                // (mean over A's row + mean over B's column), then + E: peft's order of additions.
                NDArray ab = sA.mean(new int[] {1}).add(sB.mean(new int[] {0}));
                scores.put(base + "lora_E." + adapter, sE.reshape(-1).add(ab).toFloatArray());
            }
        }
        int k = initBgt - budget;
        float threshold;
        if (k <= 0) {
            // torch.kthvalue rejects k = 0; nothing is below a full budget, so nothing is masked.
            threshold = Float.NEGATIVE_INFINITY;
        } else {
            threshold = kthSmallest(scores, k);
        }
        Map<String, List<Boolean>> pattern = new LinkedHashMap<>();
        Map<String, SVDLinear> layers = layers();
        for (Map.Entry<String, float[]> e : scores.entrySet()) {
            boolean[] keep = new boolean[e.getValue().length];
            List<Boolean> list = new ArrayList<>();
            for (int i = 0; i < keep.length; i++) {
                keep[i] = !(e.getValue()[i] <= threshold);
                list.add(keep[i]);
            }
            String path = e.getKey().substring(0, e.getKey().length() - (".lora_E." + adapter).length());
            maskE(layers.get(path), keep);
            pattern.put(e.getKey(), Collections.unmodifiableList(list));
        }
        return pattern;
    }

    private static float kthSmallest(Map<String, float[]> scores, int k) {
        int n = scores.values().stream().mapToInt(a -> a.length).sum();
        if (k > n) {
            throw new IllegalStateException("AdaLoRA budget asks to mask " + k + " ranks but only " + n + " exist");
        }
        float[] all = new float[n];
        int at = 0;
        for (float[] a : scores.values()) {
            System.arraycopy(a, 0, all, at, a.length);
            at += a.length;
        }
        Arrays.sort(all);
        return all[k - 1];
    }

    private NDArray score(String name, Param p) {
        NDArray avg = expAvgIpt.get(name);
        NDArray unc = expAvgUnc.get(name);
        if (avg == null || unc == null) {
            return p.data().zerosLike();
        }
        return avg.mul(unc);
    }

    /** {@code E[i] = 0} where {@code keep[i]} is false, in place (the optimizer keeps its state for E). */
    private void maskE(SVDLinear layer, boolean[] keep) {
        float[] m = new float[keep.length];
        for (int i = 0; i < keep.length; i++) {
            m[i] = keep[i] ? 1f : 0f;
        }
        try (NoGrad ng = NoGrad.enter(); NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray e = layer.loraE(adapter).data();
            e.muli(e.getManager().create(m, new Shape(keep.length, 1)));
        }
    }

    /**
     * peft's {@code RankAllocator.update_and_allocate}: update the scores while {@code step < total - tfinal}, then
     * mask to the scheduled budget when the schedule (or {@code forceMask}) says so; returns the pattern or null.
     */
    public Map<String, List<Boolean>> updateAndAllocate(int step, AdaLoraConfig c, boolean forceMask) {
        if (step < requireTotalStep(c) - c.tfinal()) {
            updateIpt();
        }
        Budget b = budgetSchedule(step, c);
        return b.mask() || forceMask ? maskToBudget(b.budget()) : null;
    }

    /**
     * peft's {@code mask_using_rank_pattern}: zero the E entries a stored pattern marks false. Keys may carry the
     * adapter name ({@code ...lora_E.default}) or not (as saved).
     */
    public void maskUsingRankPattern(Map<String, List<Boolean>> pattern) {
        if (pattern == null || pattern.isEmpty()) {
            throw new IllegalStateException("AdaLoRA: no rank_pattern to apply after the budgeting phase");
        }
        boolean truncated = !pattern.keySet().iterator().next().contains(adapter);
        for (Map.Entry<String, SVDLinear> e : layers().entrySet()) {
            String name = e.getKey() + ".lora_E." + adapter;
            String key = truncated ? name.replace("." + adapter, "") : name;
            List<Boolean> mask = pattern.get(key);
            int rows = (int) e.getValue().loraE(adapter).shape().get(0);
            if (mask == null || mask.size() != rows) {
                throw new IllegalStateException("AdaLoRA rank_pattern has " + (mask == null ? "no entry" : mask.size()
                        + " entries") + " for '" + key + "' (rank " + rows + ")");
            }
            boolean[] keep = new boolean[rows];
            for (int i = 0; i < rows; i++) {
                keep[i] = mask.get(i);
            }
            maskE(e.getValue(), keep);
        }
    }

    /** Frees the smoothed scores. */
    @Override
    public void close() {
        resetIpt();
        manager.close();
    }

    /** The adapter this allocator budgets. */
    public String adapter() {
        return adapter;
    }
}
