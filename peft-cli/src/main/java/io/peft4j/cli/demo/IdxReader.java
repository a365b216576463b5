package io.peft4j.cli.demo;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.zip.GZIPInputStream;

/**
 * Reads the IDX files of MNIST and Fashion-MNIST ({@code idx3-ubyte} images, {@code idx1-ubyte} labels),
 * gzip-compressed or raw: the format is detected from the first two bytes, not the file name.
 *
 * <p>Every failure names the file, because a demo that says only "bad magic" leaves the user guessing
 * which of four files is wrong.
 */
public final class IdxReader {
    static final int IMAGES_MAGIC = 0x00000803;
    static final int LABELS_MAGIC = 0x00000801;

    private IdxReader() {}

    /** Unsigned 8-bit images, row-major, {@code count * rows * cols} bytes. */
    public record Images(int count, int rows, int cols, byte[] pixels) {
        /** Pixel {@code (r, c)} of image {@code i} in 0..255. */
        public int pixel(int i, int r, int c) {
            return pixels[(i * rows + r) * cols + c] & 0xff;
        }
    }

    public static Images readImages(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            return readImages(in, file.toString());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read IDX images " + file + ": " + e.getMessage(), e);
        }
    }

    public static byte[] readLabels(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            return readLabels(in, file.toString());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read IDX labels " + file + ": " + e.getMessage(), e);
        }
    }

    /** Reads an image file from a stream; {@code name} is used in error messages. Does not close {@code in}. */
    public static Images readImages(InputStream in, String name) {
        try {
            DataInputStream d = open(in);
            checkMagic(d, name, IMAGES_MAGIC, "image (idx3-ubyte)");
            int count = dim(d, name, "image count");
            int rows = dim(d, name, "rows");
            int cols = dim(d, name, "columns");
            long size = (long) count * rows * cols;
            if (size > Integer.MAX_VALUE - 16) {
                throw new IdxFormatException(name + ": header says " + count + " images of " + rows + "x" + cols
                        + ", too large to hold in one array");
            }
            byte[] pixels = new byte[(int) size];
            readBody(d, pixels, name, count + " images of " + rows + "x" + cols);
            return new Images(count, rows, cols, pixels);
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": " + e.getMessage(), e);
        }
    }

    /** Reads a label file from a stream; {@code name} is used in error messages. Does not close {@code in}. */
    public static byte[] readLabels(InputStream in, String name) {
        try {
            DataInputStream d = open(in);
            checkMagic(d, name, LABELS_MAGIC, "label (idx1-ubyte)");
            int count = dim(d, name, "label count");
            byte[] labels = new byte[count];
            readBody(d, labels, name, count + " labels");
            return labels;
        } catch (IOException e) {
            throw new UncheckedIOException(name + ": " + e.getMessage(), e);
        }
    }

    private static DataInputStream open(InputStream raw) throws IOException {
        BufferedInputStream in = new BufferedInputStream(raw, 1 << 16);
        in.mark(2);
        int b0 = in.read();
        int b1 = in.read();
        in.reset();
        boolean gzip = b0 == 0x1f && b1 == 0x8b;
        return new DataInputStream(gzip ? new BufferedInputStream(new GZIPInputStream(in, 1 << 16), 1 << 16) : in);
    }

    private static void checkMagic(DataInputStream d, String name, int expected, String kind) throws IOException {
        int magic;
        try {
            magic = d.readInt();
        } catch (EOFException e) {
            throw new IdxFormatException(name + ": truncated: file ends before the 4-byte IDX magic number");
        }
        if (magic != expected) {
            String hint = magic == (expected == IMAGES_MAGIC ? LABELS_MAGIC : IMAGES_MAGIC)
                    ? " (this looks like the other kind of IDX file: images and labels swapped?)"
                    : "";
            throw new IdxFormatException(String.format(Locale.ROOT, "%s: not an IDX %s file: magic number 0x%08x, expected 0x%08x%s",
                    name, kind, magic, expected, hint));
        }
    }

    private static int dim(DataInputStream d, String name, String what) throws IOException {
        int v;
        try {
            v = d.readInt();
        } catch (EOFException e) {
            throw new IdxFormatException(name + ": truncated: file ends inside the header (" + what + ")");
        }
        if (v <= 0) {
            throw new IdxFormatException(name + ": invalid " + what + " " + v + " in the IDX header");
        }
        return v;
    }

    private static void readBody(DataInputStream d, byte[] into, String name, String what) throws IOException {
        int got = 0;
        try {
            while (got < into.length) {
                int n = d.read(into, got, into.length - got);
                if (n < 0) {
                    break;
                }
                got += n;
            }
        } catch (EOFException e) {
            // GZIPInputStream reports a cut-off compressed stream this way rather than returning -1.
        }
        if (got < into.length) {
            throw new IdxFormatException(name + ": truncated: header announces " + what + " (" + into.length
                    + " data bytes) but only " + got + " are present");
        }
    }

    /** A file that is not a well-formed IDX file of the expected kind. */
    public static final class IdxFormatException extends IllegalArgumentException {
        public IdxFormatException(String message) {
            super(message);
        }
    }
}
