package io.peft4j.nn;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class AtomicDirectoryTest {

    @Test
    void failedWriteLeavesThePreviousDirectoryAndNoTempBehind(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("out");
        AtomicDirectory.write(dir, false, d -> Files.writeString(d.resolve("a.txt"), "v1"));
        assertThatThrownBy(() -> AtomicDirectory.write(dir, true, d -> {
            Files.writeString(d.resolve("a.txt"), "v2");
            throw new IOException("disk full");
        })).hasMessage("disk full");
        assertThat(Files.readString(dir.resolve("a.txt"))).isEqualTo("v1");
        try (var s = Files.list(tmp)) {
            assertThat(s.map(p -> p.getFileName().toString())).containsExactly("out");
        }
    }

    @Test
    void keepExistingPreservesOtherFilesAndReplaceDoesNot(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("out");
        AtomicDirectory.write(dir, false, d -> Files.writeString(d.resolve("README.md"), "mine"));
        AtomicDirectory.write(dir, true, d -> Files.writeString(d.resolve("w.bin"), "x"));
        assertThat(dir.resolve("README.md")).hasContent("mine");
        AtomicDirectory.write(dir, false, d -> Files.writeString(d.resolve("w.bin"), "y"));
        assertThat(dir.resolve("README.md")).doesNotExist();
        assertThat(dir.resolve("w.bin")).hasContent("y");
    }

    @Test
    void refusesAFileWhereTheDirectoryShouldGo(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("f");
        Files.writeString(file, "keep");
        assertThatThrownBy(() -> AtomicDirectory.write(file, false, d -> { })).hasMessageContaining("not a directory");
        assertThat(file).hasContent("keep");
    }
}
