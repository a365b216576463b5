package io.peft4j.model;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Options of {@link PeftModel#saveAdapter(Path, SaveOptions)}, named after the arguments of peft's
 * {@code save_pretrained}.
 *
 * <pre>{@code
 * peft.saveAdapter(initDir);                               // right after getPeftModel, before training
 * ... train ...
 * peft.saveAdapter(outDir, SaveOptions.builder().pathInitialModelForWeightConversion(initDir).build());
 * }</pre>
 */
public final class SaveOptions {
    /** Every adapter, no conversion. */
    public static final SaveOptions DEFAULT = builder().build();

    private final List<String> selectedAdapters;
    private final Path pathInitialModelForWeightConversion;

    private SaveOptions(Builder b) {
        this.selectedAdapters = b.selectedAdapters == null ? null : List.copyOf(b.selectedAdapters);
        this.pathInitialModelForWeightConversion = b.pathInitialModelForWeightConversion;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The adapters to save, or null for all of them. */
    public List<String> selectedAdapters() {
        return selectedAdapters;
    }

    /** The untrained PiSSA / OLoRA / LoRA-GA / CorDA adapter to convert against, or null. */
    public Path pathInitialModelForWeightConversion() {
        return pathInitialModelForWeightConversion;
    }

    /** Builder for {@link SaveOptions}. */
    public static final class Builder {
        private List<String> selectedAdapters;
        private Path pathInitialModelForWeightConversion;

        private Builder() {}

        /** Save only these adapters (peft's {@code selected_adapters}); null saves all. */
        public Builder selectedAdapters(List<String> names) {
            this.selectedAdapters = names;
            return this;
        }

        public Builder selectedAdapters(String... names) {
            return selectedAdapters(Arrays.asList(names));
        }

        /**
         * peft's {@code path_initial_model_for_weight_conversion}: the directory where the adapter was saved right
         * after {@code getPeftModel}, before any training. The adapter is then saved as a plain LoRA adapter for
         * the original base weights: {@code A' = cat([A, A0])}, {@code B' = cat([B, −B0])}, {@code r} and
         * {@code lora_alpha} doubled (alpha times √2 with rsLoRA), {@code init_lora_weights} true. Unlike peft, the
         * initial directory is only read, not rewritten.
         */
        public Builder pathInitialModelForWeightConversion(Path dir) {
            this.pathInitialModelForWeightConversion = dir;
            return this;
        }

        public SaveOptions build() {
            return new SaveOptions(this);
        }
    }
}
