package io.peft4j.nn;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class TorchTest {
    private static final String ZEN5_FLAGS = "flags\t\t: fpu vme de pse tsc msr avx2 bmi2 erms avx512f avx512dq adx";

    @Test
    void mklHintIsForAmdCpusWithAvx512Only() {
        assertThat(Torch.amdWithAvx512(List.of("processor\t: 0", "vendor_id\t: AuthenticAMD", ZEN5_FLAGS))).isTrue();
        assertThat(Torch.amdWithAvx512(List.of("vendor_id\t: GenuineIntel", ZEN5_FLAGS))).isFalse();
        // Zen 3: AVX2 only; avx512 feature names that are not avx512f do not count either.
        assertThat(Torch.amdWithAvx512(List.of("vendor_id\t: AuthenticAMD", "flags\t\t: fpu avx2 fma"))).isFalse();
        assertThat(Torch.amdWithAvx512(List.of("vendor_id\t: AuthenticAMD", "flags\t\t: avx2 avx512fp16"))).isFalse();
        assertThat(Torch.amdWithAvx512(List.of())).isFalse();
    }
}
