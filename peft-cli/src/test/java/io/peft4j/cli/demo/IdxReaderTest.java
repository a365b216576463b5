package io.peft4j.cli.demo;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class IdxReaderTest {
    static final String IMAGES = "/fashion-mnist/t10k-images-idx3-ubyte.gz";
    static final String LABELS = "/fashion-mnist/t10k-labels-idx1-ubyte.gz";

    /** Independent check: gunzip the whole file and read fixed offsets (16-byte image, 8-byte label header). */
    static byte[] gunzipResource(String name) throws IOException {
        try (InputStream in = new GZIPInputStream(IdxReaderTest.class.getResourceAsStream(name))) {
            return in.readAllBytes();
        }
    }

    @Test
    void readsShippedTestSplit() throws IOException {
        IdxReader.Images images;
        byte[] labels;
        try (InputStream im = IdxReaderTest.class.getResourceAsStream(IMAGES);
                InputStream lb = IdxReaderTest.class.getResourceAsStream(LABELS)) {
            images = IdxReader.readImages(im, IMAGES);
            labels = IdxReader.readLabels(lb, LABELS);
        }
        assertThat(images.count()).isEqualTo(10_000);
        assertThat(images.rows()).isEqualTo(28);
        assertThat(images.cols()).isEqualTo(28);
        assertThat(images.pixels()).hasSize(10_000 * 784);
        assertThat(labels).hasSize(10_000);
        for (byte l : labels) {
            assertThat((int) l).isBetween(0, 9);
        }

        byte[] rawLabels = gunzipResource(LABELS);
        byte[] rawImages = gunzipResource(IMAGES);
        assertThat(rawLabels[8]).isEqualTo((byte) 9); // the first t10k item is an ankle boot
        assertThat(labels[0]).isEqualTo(rawLabels[8]);
        assertThat(labels).isEqualTo(Arrays.copyOfRange(rawLabels, 8, rawLabels.length));
        assertThat(images.pixels()).isEqualTo(Arrays.copyOfRange(rawImages, 16, rawImages.length));
        assertThat(images.pixel(0, 14, 14)).isEqualTo(rawImages[16 + 14 * 28 + 14] & 0xff);
    }

    @Test
    void readsRawAndGzipFilesFromDisk(@TempDir Path dir) throws IOException {
        byte[] raw = idx(IdxReader.IMAGES_MAGIC, new int[] {2, 2, 3}, new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, (byte) 255});
        Path plain = Files.write(dir.resolve("imgs"), raw);
        Path gz = Files.write(dir.resolve("imgs.bin"), gzip(raw)); // detection by content, not by name
        for (Path p : new Path[] {plain, gz}) {
            IdxReader.Images im = IdxReader.readImages(p);
            assertThat(im.count()).isEqualTo(2);
            assertThat(im.rows()).isEqualTo(2);
            assertThat(im.cols()).isEqualTo(3);
            assertThat(im.pixel(1, 1, 2)).isEqualTo(255);
        }
    }

    @Test
    void wrongMagicNamesTheFile(@TempDir Path dir) throws IOException {
        Path p = Files.write(dir.resolve("bogus-images.gz"), gzip(idx(0x12345678, new int[] {1, 1, 1}, new byte[] {0})));
        assertThatThrownBy(() -> IdxReader.readImages(p))
                .isInstanceOf(IdxReader.IdxFormatException.class)
                .hasMessageContaining(p.toString())
                .hasMessageContaining("magic number 0x12345678")
                .hasMessageContaining("expected 0x00000803");
    }

    @Test
    void labelsFileGivenAsImagesSaysSo(@TempDir Path dir) throws IOException {
        Path p = Files.write(dir.resolve("labels"), idx(IdxReader.LABELS_MAGIC, new int[] {1}, new byte[] {3}));
        assertThatThrownBy(() -> IdxReader.readImages(p))
                .hasMessageContaining(p.toString())
                .hasMessageContaining("swapped");
    }

    @Test
    void truncatedDataNamesTheFileAndCounts(@TempDir Path dir) throws IOException {
        byte[] full = idx(IdxReader.LABELS_MAGIC, new int[] {100}, new byte[100]);
        Path p = Files.write(dir.resolve("short-labels"), Arrays.copyOf(full, full.length - 40));
        assertThatThrownBy(() -> IdxReader.readLabels(p))
                .isInstanceOf(IdxReader.IdxFormatException.class)
                .hasMessageContaining(p.toString())
                .hasMessageContaining("truncated")
                .hasMessageContaining("100 labels")
                .hasMessageContaining("only 60");
    }

    @Test
    void truncatedHeaderAndCutGzipStreamAreReported(@TempDir Path dir) throws IOException {
        Path header = Files.write(dir.resolve("tiny"), new byte[] {0, 0, 8, 3, 0, 0});
        assertThatThrownBy(() -> IdxReader.readImages(header))
                .hasMessageContaining(header.toString())
                .hasMessageContaining("truncated");

        byte[] shipped;
        try (InputStream in = IdxReaderTest.class.getResourceAsStream(LABELS)) {
            shipped = in.readAllBytes();
        }
        Path cut = Files.write(dir.resolve("cut-labels.gz"), Arrays.copyOf(shipped, shipped.length / 2));
        assertThatThrownBy(() -> IdxReader.readLabels(cut))
                .hasMessageContaining(cut.toString())
                .hasMessageContaining("truncated");
    }

    @Test
    void missingDirectoryFilesAreListed(@TempDir Path dir) {
        assertThatThrownBy(() -> FashionMnist.load(dir, false))
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("train-images-idx3-ubyte");
    }

    @Test
    void shippedSplitIsCutEightThousandTwoThousand() {
        FashionMnist.Data d = FashionMnist.loadShipped();
        assertThat(d.shipped()).isTrue();
        assertThat(d.train().size()).isEqualTo(8000);
        assertThat(d.test().size()).isEqualTo(2000);
        assertThat(d.train().pixels()).hasSize(8000 * 784);
        assertThat(d.source()).contains("8,000").contains("test");
    }

    static byte[] idx(int magic, int[] dims, byte[] body) {
        ByteBuffer b = ByteBuffer.allocate(4 + 4 * dims.length + body.length);
        b.putInt(magic);
        for (int d : dims) {
            b.putInt(d);
        }
        b.put(body);
        return b.array();
    }

    static byte[] gzip(byte[] data) throws IOException {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        try (OutputStream out = new GZIPOutputStream(bos)) {
            out.write(data);
        }
        return bos.toByteArray();
    }
}
