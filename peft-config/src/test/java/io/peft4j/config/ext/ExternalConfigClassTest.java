package io.peft4j.config.ext;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.peft4j.config.ConfigSchema;
import io.peft4j.config.PeftConfig;
import io.peft4j.config.PeftConfigException;
import io.peft4j.config.PeftType;
import org.junit.jupiter.api.Test;

/** A later module must be able to add a config class from outside the package. */
class ExternalConfigClassTest {

    static final class VeraLikeConfig extends PeftConfig {
        static final ConfigSchema SCHEMA = ConfigSchema.base("VeraConfig", PeftType.VERA)
                .legacy("r", 256)
                .legacy("vera_dropout", 0.0);

        private final int r;

        private VeraLikeConfig(Builder b) {
            super(b);
            r = integer("r");
            if (r <= 0) {
                throw error("r", "must be > 0", r);
            }
        }

        int r() {
            return r;
        }

        static VeraLikeConfig parse(ObjectNode tree, String source) {
            return new Builder().readJson(tree, source).build();
        }

        static final class Builder extends AbstractBuilder<VeraLikeConfig, Builder> {
            Builder() {
                super(SCHEMA);
            }

            @Override
            public VeraLikeConfig build() {
                return new VeraLikeConfig(this);
            }
        }
    }

    @Test
    void registeredExternalClassLoadsValidatesAndWrites() {
        PeftConfig.register(PeftType.VERA, VeraLikeConfig::parse);
        try {
            PeftConfig c = PeftConfig.fromJson("{\"peft_type\": \"VERA\", \"r\": 4}", "vera.json");
            assertThat(c).isInstanceOf(VeraLikeConfig.class);
            assertThat(((VeraLikeConfig) c).r()).isEqualTo(4);
            assertThat(c.toJson()).isEqualTo("{\n  \"peft_type\": \"VERA\",\n  \"r\": 4\n}");
            assertThat(new VeraLikeConfig.Builder().build().toJson()).isEqualTo("{\n"
                    + "  \"auto_mapping\": null,\n  \"base_model_name_or_path\": null,\n"
                    + "  \"inference_mode\": false,\n  \"peft_type\": \"VERA\",\n  \"r\": 256,\n"
                    + "  \"revision\": null,\n  \"task_type\": null,\n  \"vera_dropout\": 0.0\n}");
            assertThatThrownBy(() -> PeftConfig.fromJson("{\"peft_type\": \"VERA\", \"r\": 0}", "vera.json"))
                    .isInstanceOf(PeftConfigException.class)
                    .hasMessage("vera.json (VeraConfig): field 'r' must be > 0 but was 0");
        } finally {
            PeftConfig.unregister(PeftType.VERA);
        }
    }
}
