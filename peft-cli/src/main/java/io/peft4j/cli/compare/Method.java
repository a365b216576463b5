package io.peft4j.cli.compare;

import io.peft4j.config.AdaLoraConfig;
import io.peft4j.config.IA3Config;
import io.peft4j.config.LoraConfig;
import io.peft4j.config.LoraGAConfig;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PrefixTuningConfig;
import io.peft4j.config.PromptEncoderConfig;
import io.peft4j.config.PromptTuningConfig;
import io.peft4j.config.TaskType;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** A method {@code peft compare} can run, by its command-line name, and the config it trains with. */
public enum Method {
    LORA("lora"),
    /** LoRA on NF4 base weights (double quantisation, blocks of 64): QLoRA. */
    QLORA("qlora"),
    RSLORA("rslora"),
    DORA("dora"),
    IA3("ia3"),
    ADALORA("adalora"),
    PISSA("pissa"),
    LORA_GA("lora-ga"),
    PROMPT_TUNING("prompt-tuning"),
    PREFIX_TUNING("prefix-tuning"),
    P_TUNING("p-tuning"),
    FULL_FT("full-ft");

    private final String cliName;

    Method(String cliName) {
        this.cliName = cliName;
    }

    public String cliName() {
        return cliName;
    }

    /** Prompt tuning, prefix tuning and P-tuning: they need a transformer's embeddings and attention. */
    public boolean promptLearning() {
        return this == PROMPT_TUNING || this == PREFIX_TUNING || this == P_TUNING;
    }

    /**
     * The shared settings of a comparison.
     *
     * @param targets LoRA-family targets, or null for the model type's defaults (as peft)
     * @param ia3Targets IA3 targets and feed-forward modules, or null for the defaults
     */
    public record Settings(int r, int alpha, List<String> targets, List<String> ia3Targets,
                           List<String> ia3FeedForward, int steps, int virtualTokens, TaskType task) {}

    /** The config this method trains with; null for full fine-tuning. */
    public PeftConfig config(Settings s) {
        LoraConfig.Builder lora = LoraConfig.builder().r(s.r()).loraAlpha(s.alpha()).taskType(s.task());
        if (s.targets() != null) {
            lora.targetModules(s.targets());
        }
        return switch (this) {
            case LORA, QLORA -> lora.build();
            case RSLORA -> lora.useRslora(true).build();
            case DORA -> lora.useDora(true).build();
            // Randomised SVD with 4 subspace iterations: peft's fast PiSSA variant.
            case PISSA -> lora.initLoraWeights("pissa_niter_4").build();
            case LORA_GA -> lora.initLoraWeights("lora_ga").loraGaConfig(new LoraGAConfig()).build();
            case IA3 -> {
                IA3Config.Builder b = IA3Config.builder().taskType(s.task());
                if (s.ia3Targets() != null) {
                    b.targetModules(s.ia3Targets()).feedforwardModules(s.ia3FeedForward().toArray(String[]::new));
                }
                yield b.build();
            }
            case ADALORA -> {
                // AdaLoRA starts at 1.5x the rank and prunes to r: warm-up 10% of the steps, final 20% fixed.
                AdaLoraConfig.Builder b = AdaLoraConfig.builder().initR(s.r() + (s.r() + 1) / 2).targetR(s.r())
                        .loraAlpha(s.alpha()).totalStep(s.steps()).tinit(s.steps() / 10).tfinal(s.steps() / 5)
                        .taskType(s.task());
                if (s.targets() != null) {
                    b.targetModules(s.targets());
                }
                yield b.build();
            }
            case PROMPT_TUNING -> PromptTuningConfig.builder().numVirtualTokens(s.virtualTokens()).taskType(s.task())
                    .build();
            case PREFIX_TUNING -> PrefixTuningConfig.builder().numVirtualTokens(s.virtualTokens()).taskType(s.task())
                    .build();
            case P_TUNING -> PromptEncoderConfig.builder().numVirtualTokens(s.virtualTokens()).taskType(s.task())
                    .build();
            case FULL_FT -> null;
        };
    }

    /** A short description of the method's settings for the table. */
    public String settings(Settings s) {
        return switch (this) {
            case LORA, DORA, PISSA, LORA_GA -> "r=" + s.r() + " alpha=" + s.alpha();
            case QLORA -> "r=" + s.r() + " alpha=" + s.alpha() + " on NF4";
            case RSLORA -> "r=" + s.r() + " alpha=" + s.alpha() + " (alpha/sqrt(r))";
            case IA3 -> "scaling vectors";
            case ADALORA -> "init_r=" + (s.r() + (s.r() + 1) / 2) + " target_r=" + s.r();
            case PROMPT_TUNING, PREFIX_TUNING, P_TUNING -> s.virtualTokens() + " virtual tokens";
            case FULL_FT -> "all weights";
        };
    }

    /** Parses {@code lora,dora,...} (names as {@link #cliName()}). */
    public static List<Method> parseList(String csv) {
        List<Method> out = new ArrayList<>();
        for (String name : csv.split(",")) {
            String n = name.trim().toLowerCase(Locale.ROOT);
            if (n.isEmpty()) {
                continue;
            }
            Method m = Arrays.stream(values()).filter(v -> v.cliName.equals(n)).findFirst().orElseThrow(() ->
                    new IllegalArgumentException("--methods: unknown method '" + name.trim() + "' (known: "
                            + String.join(", ", Arrays.stream(values()).map(Method::cliName).toList()) + ")"));
            if (!out.contains(m)) {
                out.add(m);
            }
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("--methods: no method given");
        }
        return out;
    }
}
