package io.peft4j.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The peft maintainers' method-comparison configs (shared fixtures, not shipped with the project). */
class FixtureConfigsTest {
    private static final ObjectMapper M = new ObjectMapper();
    private static final String ROOT = "fixtures/peft-adapter-configs";
    private static final Set<PeftType> SUPPORTED = EnumSet.of(PeftType.LORA, PeftType.ADALORA, PeftType.IA3,
            PeftType.PROMPT_TUNING, PeftType.PREFIX_TUNING, PeftType.P_TUNING);

    /**
     * Fixtures of supported types that were written by hand rather than json.dumps (inline lists, 4-space indent,
     * unsorted keys); found by comparing each file with Python's json.dumps(json.load(f), indent=2, sort_keys=True).
     * All other fixtures are json.dumps output, some followed by one newline.
     */
    private static final Set<String> HAND_FORMATTED = Set.of(
            "ia3/llama-3.2-3B-all-attn-5k-lr0.005",
            "lora/llama-3.2-3B-rank10-target-mlp",
            "lora/llama-3.2-3B-rank14-target-mlp-bdlora",
            "prefixtuning/llama-3.2-3B-lr_0.005_zero_init",
            "prefixtuning/llama-3.2-3B-tokens50-init_prefix-lr_0.005");

    static Stream<Path> fixtureFiles() {
        return SharedData.filesOrSkipMarker(ROOT);
    }

    private static String caseName(Path file) {
        Path root = SharedData.sharedDir().resolve(ROOT);
        return root.relativize(file.getParent()).toString().replace('\\', '/');
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtureFiles")
    void loadsAndRoundTripsOrFailsNamingTheType(Path file) throws Exception {
        SharedData.assumePresent(file);
        String text = SharedData.read(file);
        JsonNode original = M.readTree(text);
        PeftType type = PeftType.valueOf(original.get("peft_type").asText());
        if (!SUPPORTED.contains(type)) {
            assertThatThrownBy(() -> PeftConfig.fromPretrained(file))
                    .isInstanceOf(PeftConfigException.class)
                    .hasMessageContaining(type.name())
                    .hasMessageContaining("not implemented")
                    .hasMessageContaining(file.toString());
            return;
        }
        PeftConfig config = PeftConfig.fromPretrained(file);
        assertThat(config.peftType()).isEqualTo(type);
        assertThat(M.readTree(config.toJson())).isEqualTo(original);
        if (!HAND_FORMATTED.contains(caseName(file))) {
            String expected = text.endsWith("\n") ? text.substring(0, text.length() - 1) : text;
            assertThat(config.toJson()).isEqualTo(expected);
        }
        // a second pass through the writer changes nothing
        assertThat(PeftConfig.fromJson(config.toJson(), "again").toJson()).isEqualTo(config.toJson());
    }

    @Test
    void fixturesCoverEverySupportedTypeAndSomeUnsupportedOnes() throws Exception {
        Path root = SharedData.requireShared(ROOT);
        List<Path> files = SharedData.configFilesUnder(root);
        Set<PeftType> types = EnumSet.noneOf(PeftType.class);
        for (Path f : files) {
            types.add(PeftType.valueOf(M.readTree(SharedData.read(f)).get("peft_type").asText()));
        }
        assertThat(types).containsAll(SUPPORTED);
        assertThat(types.stream().filter(t -> !SUPPORTED.contains(t)).collect(Collectors.toSet())).isNotEmpty();
        for (String name : HAND_FORMATTED) {
            assertThat(root.resolve(name).resolve("adapter_config.json")).exists();
        }
    }

    @Test
    void newerLoraKeysAreKeptAsJson() {
        Path root = SharedData.requireShared(ROOT);
        LoraConfig kasa = (LoraConfig) PeftConfig.fromPretrained(root.resolve("lora/llama-3.2-3B-rank32-kasa"));
        assertThat(kasa.kasaConfig().get("beta").doubleValue()).isEqualTo(1e-4);
        assertThat(kasa.unknownFields()).isEmpty();
        LoraConfig bd = (LoraConfig) PeftConfig.fromPretrained(
                root.resolve("lora/llama-3.2-3B-rank14-target-mlp-bdlora"));
        assertThat(bd.useBdlora().get("nblocks").intValue()).isEqualTo(2);
        assertThat(bd.targetModules().names()).containsExactly("gate_proj", "up_proj", "down_proj");
        AdaLoraConfig ada = (AdaLoraConfig) PeftConfig.fromPretrained(root.resolve("adalora/llama-3.2-3B-rank32"));
        assertThat(ada.totalStep()).isEqualTo(5000);
        assertThat(ada.inferenceMode()).isFalse();
        PrefixTuningConfig zero = (PrefixTuningConfig) PeftConfig.fromPretrained(
                root.resolve("prefixtuning/llama-3.2-3B-lr_0.005_zero_init"));
        assertThat(zero.initWeights()).isEqualTo("zero");
    }
}
