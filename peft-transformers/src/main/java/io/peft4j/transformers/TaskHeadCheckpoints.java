package io.peft4j.transformers;

import ai.djl.ndarray.NDManager;
import io.peft4j.nn.Module;
import io.peft4j.nn.safetensors.ShardedSafetensors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;
import java.util.function.Predicate;

/**
 * Loads a checkpoint into a base model ({@code BertModel}) or a model with a task head
 * ({@code BertForSequenceClassification}, base under {@code bert.}), the way transformers'
 * {@code from_pretrained} uses {@code base_model_prefix}:
 * <ul>
 *   <li>the base-model prefix is added or stripped as the checkpoint needs, so a base model loads from a
 *       head checkpoint and the other way round;</li>
 *   <li>tensors outside the base model that this model lacks (another task's head: {@code cls.*} of
 *       BertForMaskedLM, {@code vocab_*} of DistilBertForMaskedLM, another classifier) are skipped with a
 *       warning;</li>
 *   <li>head tensors the checkpoint lacks keep their fresh initialisation, with a warning ("newly
 *       initialized", as transformers says).</li>
 * </ul>
 * Everything else is as strict as {@link Checkpoints#loadSafetensors}: a missing base-model tensor, an
 * unknown tensor inside the base model or a wrong shape fails naming the file and key.
 */
public final class TaskHeadCheckpoints {
    private static final Logger LOG = LoggerFactory.getLogger(TaskHeadCheckpoints.class);

    private TaskHeadCheckpoints() {}

    /**
     * What a load did besides copying tensors.
     *
     * @param newlyInitialized model state names not in the checkpoint (kept as initialised)
     * @param unused checkpoint names skipped because they belong to another head
     */
    public record Report(List<String> newlyInitialized, List<String> unused) {
        public Report {
            newlyInitialized = List.copyOf(newlyInitialized);
            unused = List.copyOf(unused);
        }
    }

    /** The root of the tree a checkpoint with prefixed names is loaded into, when the model is the base. */
    private static final class Prefixed extends Module {
        Prefixed(String prefix, Module base) {
            registerModule(prefix, base);
        }
    }

    /**
     * @param model the model to fill: {@code base} itself or a head model holding {@code base} as child
     *              {@code prefix}
     * @param mayBeMissing model state names the checkpoint may lack (task head, pooler)
     * @param silent checkpoint names to skip without a word (non-persistent buffers older versions saved)
     */
    public static Report load(Module model, Module base, String prefix, Path dirOrFile, NDManager manager,
                              Set<String> mayBeMissing, Predicate<String> silent) throws IOException {
        List<String> names;
        try (ShardedSafetensors st = ShardedSafetensors.open(dirOrFile)) {
            names = new ArrayList<>(st.names());
        }
        String dot = prefix + ".";
        boolean prefixed = names.stream().anyMatch(n -> n.startsWith(dot));
        boolean isBase = model == base;
        Module target;
        // Maps a model state name to its name in the checkpoint, or null when the checkpoint cannot hold it.
        Function<String, String> toCheckpoint;
        if (isBase && prefixed) {
            target = new Prefixed(prefix, base);
            toCheckpoint = k -> dot + k;
        } else if (!isBase && !prefixed) {
            target = base;
            toCheckpoint = k -> k.startsWith(dot) ? k.substring(dot.length()) : null;
        } else {
            target = model;
            toCheckpoint = k -> k;
        }
        Set<String> targetKeys = target.namedStateEntries().keySet();
        Set<String> baseRoots = base.children().keySet();
        Predicate<String> insideBase = prefixed ? n -> n.startsWith(dot)
                : n -> baseRoots.contains(n.contains(".") ? n.substring(0, n.indexOf('.')) : n);
        Predicate<String> foreign = n -> !targetKeys.contains(n) && !silent.test(n) && !insideBase.test(n);

        Set<String> optional = new HashSet<>();
        for (String k : mayBeMissing) {
            String c = toCheckpoint.apply(k);
            if (c != null) {
                optional.add(c);
            }
        }
        Checkpoints.loadSafetensors(target, dirOrFile, manager, silent.or(foreign), optional);

        Set<String> present = new HashSet<>(names);
        List<String> fresh = new ArrayList<>();
        for (String k : model.namedStateEntries().keySet()) {
            String c = toCheckpoint.apply(k);
            if (c == null || !present.contains(c)) {
                fresh.add(k);
            }
        }
        List<String> unused = names.stream().filter(foreign).toList();
        String cls = model.getClass().getSimpleName();
        if (!unused.isEmpty()) {
            LOG.warn("Some weights of the model checkpoint at {} were not used when initializing {}: {} (expected "
                    + "when the checkpoint was saved with another head, e.g. a pre-training or masked-LM head)",
                    dirOrFile, cls, new LinkedHashSet<>(unused));
        }
        if (!fresh.isEmpty()) {
            LOG.warn("Some weights of {} were not initialized from the model checkpoint at {} and are newly "
                    + "initialized: {}. You should probably train this model on a down-stream task.",
                    cls, dirOrFile, fresh);
        }
        return new Report(fresh, unused);
    }
}
