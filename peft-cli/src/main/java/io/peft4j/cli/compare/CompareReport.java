package io.peft4j.cli.compare;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The result of a comparison as a console table, {@code compare.md}, {@code compare.csv} and {@code loss.png}
 * (every method's training-loss curve). Files are written to a temporary name and renamed.
 */
public final class CompareReport {
    public static final String MARKDOWN = "compare.md";
    public static final String CSV = "compare.csv";
    public static final String CHART = "loss.png";

    private final String title;
    private final List<Comparison.Result> results;
    private final List<String> evalColumns;

    public CompareReport(String title, List<Comparison.Result> results) {
        if (results.isEmpty()) {
            throw new IllegalArgumentException("no method was run");
        }
        this.title = title;
        this.results = List.copyOf(results);
        this.evalColumns = Comparison.evalColumns(results);
    }

    /** Column headers, in order; the evaluation metrics follow the fixed columns. */
    public List<String> header() {
        List<String> h = new ArrayList<>(List.of("method", "settings", "lr", "trainable_params", "trainable_pct",
                "adapter_bytes", "peak_rss_mb", "ms_per_step", "train_loss"));
        h.addAll(evalColumns);
        return h;
    }

    /** One row per method, as text cells (the CSV values). */
    public List<List<String>> rows() {
        List<List<String>> out = new ArrayList<>();
        for (Comparison.Result r : results) {
            List<String> row = new ArrayList<>(List.of(r.method(), r.settings(), String.format(Locale.ROOT, "%.0e",
                    r.learningRate()), Long.toString(r.trainableParams()), fmt(r.trainablePercent(), 4),
                    Long.toString(r.adapterBytes()), fmt(r.peakRssMb(), 0), fmt(r.msPerStep(), 1),
                    fmt(r.finalTrainLoss(), 4)));
            for (String c : evalColumns) {
                Double v = r.eval().get(c);
                row.add(v == null ? "" : fmt(v, 4));
            }
            out.add(row);
        }
        return out;
    }

    /** The console table: aligned columns, human units. */
    public String table() {
        List<String> h = new ArrayList<>(List.of("method", "trainable", "%", "adapter", "peak RSS", "ms/step",
                "train loss"));
        evalColumns.forEach(c -> h.add(c.replace('_', ' ')));
        List<List<String>> cells = new ArrayList<>();
        for (Comparison.Result r : results) {
            List<String> row = new ArrayList<>(List.of(r.method(), String.format(Locale.ROOT, "%,d", r.trainableParams()),
                    fmt(r.trainablePercent(), 3), humanBytes(r.adapterBytes()),
                    r.peakRssMb() > 0 ? fmt(r.peakRssMb(), 0) + " MB" : "n/a", fmt(r.msPerStep(), 1),
                    fmt(r.finalTrainLoss(), 4)));
            evalColumns.forEach(c -> row.add(r.eval().containsKey(c) ? fmt(r.eval().get(c), 4) : ""));
            cells.add(row);
        }
        int[] w = new int[h.size()];
        for (int i = 0; i < w.length; i++) {
            w[i] = h.get(i).length();
            for (List<String> row : cells) {
                w[i] = Math.max(w[i], row.get(i).length());
            }
        }
        StringBuilder sb = new StringBuilder();
        appendRow(sb, h, w);
        sb.append("  ").append("-".repeat(java.util.Arrays.stream(w).sum() + 2 * (w.length - 1))).append('\n');
        cells.forEach(row -> appendRow(sb, row, w));
        return sb.toString();
    }

    private static void appendRow(StringBuilder sb, List<String> row, int[] w) {
        sb.append(' ');
        for (int i = 0; i < row.size(); i++) {
            String c = row.get(i);
            // Method names left-aligned, numbers right-aligned.
            sb.append(' ').append(i == 0 ? c + " ".repeat(w[i] - c.length()) : " ".repeat(w[i] - c.length()) + c);
            if (i < row.size() - 1) {
                sb.append(' ');
            }
        }
        sb.append('\n');
    }

    public String markdown() {
        StringBuilder sb = new StringBuilder("# ").append(title).append("\n\n");
        List<String> h = header();
        sb.append("| ").append(String.join(" | ", h)).append(" |\n");
        sb.append("|").append(" --- |".repeat(h.size())).append('\n');
        for (List<String> row : rows()) {
            sb.append("| ").append(String.join(" | ", row.stream().map(c -> c.replace("|", "\\|")).toList()))
                    .append(" |\n");
        }
        sb.append("\n`train_loss` is the mean training loss of the last ").append(Comparison.FINAL_LOSS_WINDOW)
                .append(" steps; `peak_rss_mb` the process's peak resident memory while the method ran; ")
                .append("`adapter_bytes` the saved adapter_model.safetensors (full fine-tuning: every weight in float32).")
                .append(" Loss curves: ").append(CHART).append('\n');
        return sb.toString();
    }

    /** RFC 4180 CSV with a header line. */
    public String csv() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.join(",", header())).append("\r\n");
        for (List<String> row : rows()) {
            sb.append(String.join(",", row.stream().map(CompareReport::csvCell).toList())).append("\r\n");
        }
        return sb.toString();
    }

    private static String csvCell(String c) {
        return c.contains(",") || c.contains("\"") || c.contains("\n") || c.contains("\r")
                ? "\"" + c.replace("\"", "\"\"") + "\"" : c;
    }

    /** Every method's training loss against the step, as a PNG. */
    public void writeChart(Path file) throws IOException {
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(1000).height(600).title(title)
                .xAxisTitle("step").yAxisTitle("training loss").build();
        chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideE);
        chart.getStyler().setMarkerSize(0);
        chart.getStyler().setChartBackgroundColor(java.awt.Color.WHITE);
        for (Comparison.Result r : results) {
            List<Double> y = r.losses();
            if (y.isEmpty()) {
                continue;
            }
            List<Integer> x = new ArrayList<>();
            for (int i = 1; i <= y.size(); i++) {
                x.add(i);
            }
            XYSeries s = chart.addSeries(r.method(), x, y);
            s.setMarker(SeriesMarkers.NONE);
        }
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp.png");
        // BitmapEncoder appends ".png" itself when the name lacks it; the name already ends with it.
        BitmapEncoder.saveBitmap(chart, tmp.toString(), BitmapEncoder.BitmapFormat.PNG);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Writes {@code compare.md}, {@code compare.csv} and {@code loss.png} into {@code dir}. */
    public void write(Path dir) throws IOException {
        Files.createDirectories(dir);
        writeAtomically(dir.resolve(MARKDOWN), markdown());
        writeAtomically(dir.resolve(CSV), csv());
        writeChart(dir.resolve(CHART));
    }

    private static void writeAtomically(Path file, String text) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    static String humanBytes(long b) {
        if (b < 1024) {
            return b + " B";
        }
        if (b < 1024 * 1024) {
            return fmt(b / 1024.0, 1) + " KB";
        }
        return fmt(b / (1024.0 * 1024), 1) + " MB";
    }

    private static String fmt(double v, int decimals) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%." + decimals + "f", v);
    }
}
