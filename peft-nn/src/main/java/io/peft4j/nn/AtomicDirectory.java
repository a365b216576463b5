package io.peft4j.nn;

import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Comparator;
import java.util.UUID;

/**
 * Writes a directory all or nothing: the content goes into a sibling temp directory that then replaces the
 * target with renames. If anything fails, the previous directory is left exactly as it was.
 */
public final class AtomicDirectory {
    private AtomicDirectory() {}

    /** Fills the temp directory. */
    @FunctionalInterface
    public interface Writer {
        void write(Path tmpDir) throws IOException;
    }

    /**
     * @param keepExisting seed the temp directory with a copy of the current content, so files this write does
     *                     not produce (a README, other adapters) survive
     */
    public static void write(Path dir, boolean keepExisting, Writer writer) throws IOException {
        Path target = dir.toAbsolutePath().normalize();
        Path parent = target.getParent();
        Files.createDirectories(parent);
        String token = UUID.randomUUID().toString().substring(0, 8);
        Path tmp = parent.resolve("." + target.getFileName() + ".tmp-" + token);
        Path old = parent.resolve("." + target.getFileName() + ".old-" + token);
        try {
            if (Files.exists(target) && !Files.isDirectory(target)) {
                throw new IOException(target + " exists and is not a directory");
            }
            if (keepExisting && Files.isDirectory(target)) {
                copyTree(target, tmp);
            } else {
                Files.createDirectories(tmp);
            }
            writer.write(tmp);
            if (Files.exists(target)) {
                Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
                deleteTree(old);
            } else {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            }
        } catch (IOException | RuntimeException e) {
            if (Files.exists(old) && !Files.exists(target)) {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
            }
            deleteTree(tmp);
            throw e;
        }
    }

    private static void copyTree(Path from, Path to) throws IOException {
        Files.walkFileTree(from, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs) throws IOException {
                Files.createDirectories(to.resolve(from.relativize(d)));
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) throws IOException {
                Files.copy(f, to.resolve(from.relativize(f)), StandardCopyOption.COPY_ATTRIBUTES,
                        LinkOption.NOFOLLOW_LINKS);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    /** Deletes a file or directory tree if it exists. */
    public static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (var walk = Files.walk(p)) {
            for (Path x : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(x);
            }
        }
    }
}
