package io.peft4j.config;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/** Locates the project's shared test data (outside the repository) and the copies shipped as test resources. */
final class SharedData {
    private SharedData() {
    }

    /** The shared directory, or null when it is not available. */
    static Path sharedDir() {
        String prop = System.getProperty("peft4j.shared");
        if (prop != null && Files.isDirectory(Paths.get(prop))) {
            return Paths.get(prop);
        }
        for (String candidate : List.of("../shared", "../../shared")) {
            Path p = Paths.get(candidate);
            if (Files.isDirectory(p)) {
                return p;
            }
        }
        return null;
    }

    /** A sub-directory of shared, skipping the calling test when it is absent. */
    static Path requireShared(String sub) {
        Path shared = sharedDir();
        assumeTrue(shared != null && Files.isDirectory(shared.resolve(sub)),
                "shared test data not found (set -Dpeft4j.shared); skipping: " + sub);
        return shared.resolve(sub);
    }

    /** All adapter_config.json files below {@code root}, sorted; empty list when root is missing. */
    static List<Path> configFilesUnder(Path root) {
        if (root == null || !Files.isDirectory(root)) {
            return List.of();
        }
        try (Stream<Path> s = Files.walk(root)) {
            return s.filter(p -> p.getFileName().toString().equals("adapter_config.json"))
                    .sorted()
                    .collect(Collectors.toList());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Files for a parameterised test: JUnit rejects an empty argument source, so when the shared data is missing
     * this yields one null, which {@link #assumePresent} turns into a skip.
     */
    static java.util.stream.Stream<Path> filesOrSkipMarker(String sub) {
        Path shared = sharedDir();
        List<Path> files = configFilesUnder(shared == null ? null : shared.resolve(sub));
        return files.isEmpty() ? java.util.stream.Stream.of((Path) null) : files.stream();
    }

    static void assumePresent(Path file) {
        assumeTrue(file != null, "shared test data not found (set -Dpeft4j.shared); skipping");
    }

    /** Test-resource copy of an hf-reference case directory. */
    static Path resourceCase(String name) {
        try {
            return Paths.get(SharedData.class.getResource("/hf-reference/" + name + "/adapter_config.json").toURI())
                    .getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static String read(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
