package io.peft4j.cli.demo;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Locates and loads Fashion-MNIST.
 *
 * <p>Order of preference: an explicit directory, then {@code $FASHION_MNIST_DIR}, then Debian's
 * {@code dataset-fashion-mnist} install path, then the 10k test split shipped in this jar. The shipped
 * split is all a fresh clone has, so the demo must work from it alone: its first 8,000 images become the
 * training set and the last 2,000 the test set.
 */
public final class FashionMnist {
    public static final String[] CLASS_NAMES = {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
    };
    public static final int NUM_CLASSES = 10;
    public static final int PIXELS = 28 * 28;
    /** Where Debian's {@code dataset-fashion-mnist} puts the four files. */
    public static final Path DEBIAN_DIR = Path.of("/usr/share/datasets/fashion-mnist");
    public static final String ENV_DIR = "FASHION_MNIST_DIR";
    /** Classpath folder of the shipped test split. */
    public static final String RESOURCE_DIR = "/fashion-mnist/";
    /** Images of the shipped split used for training; the rest are the test set. */
    public static final int SHIPPED_TRAIN = 8000;

    private static final String[] FILES = {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    };

    private FashionMnist() {}

    /** Images as unsigned bytes ({@code count * 784}) with their labels. */
    public record Split(byte[] pixels, byte[] labels) {
        public int size() {
            return labels.length;
        }

        /** The first {@code n} examples (all if {@code n <= 0} or larger than the split). */
        public Split head(int n) {
            return n <= 0 || n >= size() ? this : range(0, n);
        }

        Split range(int from, int to) {
            return new Split(Arrays.copyOfRange(pixels, from * PIXELS, to * PIXELS),
                    Arrays.copyOfRange(labels, from, to));
        }
    }

    /** The train/test splits and a human description of where they came from. */
    public record Data(Split train, Split test, String source, boolean shipped) {}

    /**
     * Loads the data.
     *
     * @param dataDir a directory with the four IDX files (gzip or raw), or null to auto-detect
     * @param shippedOnly ignore any installed copy and use the shipped 10k split (reproducible tests)
     */
    public static Data load(Path dataDir, boolean shippedOnly) {
        if (!shippedOnly) {
            if (dataDir != null) {
                return loadFull(dataDir, "--data");
            }
            String env = System.getenv(ENV_DIR);
            if (env != null && !env.isBlank()) {
                return loadFull(Path.of(env.trim()), "$" + ENV_DIR);
            }
            if (missing(DEBIAN_DIR).isEmpty()) {
                return loadFull(DEBIAN_DIR, "Debian package dataset-fashion-mnist");
            }
        }
        return loadShipped();
    }

    /** The 10k test split from the classpath, cut 8,000 / 2,000. */
    public static Data loadShipped() {
        IdxReader.Images images;
        byte[] labels;
        try (InputStream im = resource(FILES[2] + ".gz"); InputStream lb = resource(FILES[3] + ".gz")) {
            images = IdxReader.readImages(im, "classpath:" + RESOURCE_DIR + FILES[2] + ".gz");
            labels = IdxReader.readLabels(lb, "classpath:" + RESOURCE_DIR + FILES[3] + ".gz");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Split all = toSplit(images, labels, "shipped t10k");
        int n = all.size();
        return new Data(all.range(0, SHIPPED_TRAIN), all.range(SHIPPED_TRAIN, n),
                String.format(Locale.ROOT, "shipped 10k test split: images 1-%,d train, %,d-%,d test", SHIPPED_TRAIN,
                        SHIPPED_TRAIN + 1, n), true);
    }

    private static Data loadFull(Path dir, String via) {
        List<String> missing = missing(dir);
        if (!missing.isEmpty()) {
            throw new IllegalArgumentException("Fashion-MNIST directory " + dir + " (from " + via + ") lacks "
                    + missing + " (each may be raw or .gz)");
        }
        Split train = toSplit(IdxReader.readImages(find(dir, FILES[0])), IdxReader.readLabels(find(dir, FILES[1])),
                dir + " train");
        Split test = toSplit(IdxReader.readImages(find(dir, FILES[2])), IdxReader.readLabels(find(dir, FILES[3])),
                dir + " t10k");
        return new Data(train, test, String.format(Locale.ROOT, "%s (%s): %,d train, %,d test", dir, via, train.size(),
                test.size()), false);
    }

    private static Split toSplit(IdxReader.Images images, byte[] labels, String what) {
        if (images.rows() != 28 || images.cols() != 28) {
            throw new IllegalArgumentException(what + ": images are " + images.rows() + "x" + images.cols()
                    + ", expected 28x28");
        }
        if (images.count() != labels.length) {
            throw new IllegalArgumentException(what + ": " + images.count() + " images but " + labels.length
                    + " labels");
        }
        for (int i = 0; i < labels.length; i++) {
            if (labels[i] < 0 || labels[i] >= NUM_CLASSES) {
                throw new IllegalArgumentException(what + ": label " + labels[i] + " at index " + i
                        + " is outside 0..9");
            }
        }
        return new Split(images.pixels(), labels);
    }

    private static InputStream resource(String file) {
        InputStream in = FashionMnist.class.getResourceAsStream(RESOURCE_DIR + file);
        if (in == null) {
            throw new IllegalStateException("classpath resource " + RESOURCE_DIR + file
                    + " is missing: the peft-cli jar was built without its data");
        }
        return in;
    }

    private static List<String> missing(Path dir) {
        List<String> out = new ArrayList<>();
        for (String f : FILES) {
            if (find(dir, f) == null) {
                out.add(f);
            }
        }
        return out;
    }

    /** {@code name.gz} or {@code name} in {@code dir}, or null. */
    private static Path find(Path dir, String name) {
        for (String candidate : new String[] {name + ".gz", name}) {
            Path p = dir.resolve(candidate);
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        return null;
    }
}
