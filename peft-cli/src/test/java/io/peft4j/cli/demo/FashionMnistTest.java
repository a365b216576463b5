package io.peft4j.cli.demo;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class FashionMnistTest {

    @Test
    void fullDatasetIsUsedWhenDebianPackageIsInstalled() {
        assumeTrue(Files.isDirectory(FashionMnist.DEBIAN_DIR), "dataset-fashion-mnist is not installed");
        FashionMnist.Data d = FashionMnist.load(FashionMnist.DEBIAN_DIR, false);
        assertThat(d.shipped()).isFalse();
        assertThat(d.train().size()).isEqualTo(60_000);
        assertThat(d.test().size()).isEqualTo(10_000);
        // The shipped split is the same t10k file: its last 2,000 images are the shipped test set.
        FashionMnist.Data shipped = FashionMnist.loadShipped();
        assertThat(shipped.test().labels()).isEqualTo(java.util.Arrays.copyOfRange(d.test().labels(), 8000, 10_000));
    }

    @Test
    void shippedOnlyIgnoresInstalledCopies() {
        FashionMnist.Data d = FashionMnist.load(null, true);
        assertThat(d.shipped()).isTrue();
        assertThat(d.train().size() + d.test().size()).isEqualTo(10_000);
    }
}
