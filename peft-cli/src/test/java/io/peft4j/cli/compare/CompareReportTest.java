package io.peft4j.cli.compare;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class CompareReportTest {
    private static Comparison.Result result(String method, String settings, long trainable, List<Double> losses,
                                            Map<String, Double> eval) {
        return new Comparison.Result(method, settings, 1e-3f, trainable, 1000, 4 * trainable + 128, 321.4, 12.34,
                losses, eval);
    }

    private static CompareReport report() {
        Map<String, Double> evalA = new LinkedHashMap<>();
        evalA.put("eval_loss", 0.5);
        evalA.put("eval_accuracy", 0.75);
        Map<String, Double> evalB = new LinkedHashMap<>();
        evalB.put("eval_loss", 1.25);
        List<Double> twelve = List.of(12.0, 11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0);
        return new CompareReport("test run", List.of(
                result("lora", "r=8 alpha=16", 50, twelve, evalA),
                result("full-ft", "all weights, \"x\"", 1000, List.of(3.0, 1.0), evalB)));
    }

    @Test
    void finalTrainLossAveragesTheLastTenSteps() {
        Comparison.Result r = result("lora", "", 50, List.of(12.0, 11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0),
                Map.of());
        assertThat(r.finalTrainLoss()).isEqualTo(5.5); // mean of 10..1
        assertThat(result("x", "", 50, List.of(3.0, 1.0), Map.of()).finalTrainLoss()).isEqualTo(2.0);
        assertThat(r.trainablePercent()).isEqualTo(5.0);
        assertThat(Comparison.median(List.of(5.0, 1.0, 3.0, 100.0))).isEqualTo(4.0);
    }

    @Test
    void csvHasAHeaderAndOneQuotedRowPerMethod() {
        String csv = report().csv();
        String[] lines = csv.split("\r\n");
        assertThat(lines).hasSize(3);
        assertThat(lines[0]).isEqualTo("method,settings,lr,trainable_params,trainable_pct,adapter_bytes,peak_rss_mb,"
                + "ms_per_step,train_loss,eval_loss,eval_accuracy");
        assertThat(lines[1]).isEqualTo("lora,r=8 alpha=16,1e-03,50,5.0000,328,321,12.3,5.5000,0.5000,0.7500");
        // A cell with a comma and quotes is quoted (RFC 4180); a metric the method lacks is empty.
        assertThat(lines[2]).isEqualTo("full-ft,\"all weights, \"\"x\"\"\",1e-03,1000,100.0000,4128,321,12.3,2.0000,"
                + "1.2500,");
    }

    @Test
    void markdownAndTableListEveryMethod() {
        CompareReport r = report();
        String md = r.markdown();
        assertThat(md).startsWith("# test run\n\n| method | settings | lr |");
        assertThat(md.lines().filter(l -> l.startsWith("| ")).count()).as("header, rule, 2 rows").isEqualTo(4);
        assertThat(md).contains("\n| --- | --- |");
        assertThat(md).contains("| lora | r=8 alpha=16 | 1e-03 | 50 |");
        String table = r.table();
        assertThat(table.lines().count()).isEqualTo(4);
        assertThat(table).contains("eval accuracy").contains("1,000").contains("4.0 KB").contains("321 MB");
    }

    @Test
    void writesAValidPngWithTheLossCurves(@TempDir Path dir) throws Exception {
        report().write(dir);
        Path png = dir.resolve(CompareReport.CHART);
        byte[] bytes = Files.readAllBytes(png);
        assertThat(bytes).startsWith(0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n');
        BufferedImage img = ImageIO.read(png.toFile());
        assertThat(img.getWidth()).isEqualTo(1000);
        assertThat(img.getHeight()).isEqualTo(600);
        Set<Integer> colours = new HashSet<>();
        for (int y = 0; y < img.getHeight(); y += 3) {
            for (int x = 0; x < img.getWidth(); x += 3) {
                colours.add(img.getRGB(x, y));
            }
        }
        assertThat(colours.size()).as("a drawn chart, not a blank image").isGreaterThan(10);
        assertThat(dir.resolve(CompareReport.CSV)).exists();
        assertThat(dir.resolve(CompareReport.MARKDOWN)).exists();
        try (var files = Files.list(dir)) {
            assertThat(files.map(p -> p.getFileName().toString())).noneMatch(n -> n.contains(".tmp"));
        }
    }

    @Test
    void methodListsParseAndUnknownNamesFail() {
        assertThat(Method.parseList("lora, dora,lora,full-ft")).containsExactly(Method.LORA, Method.DORA, Method.FULL_FT);
        assertThatThrownBy(() -> Method.parseList("lora,xlora")).hasMessageContaining("unknown method 'xlora'")
                .hasMessageContaining("p-tuning");
        assertThatThrownBy(() -> new CompareReport("x", List.of())).isInstanceOf(IllegalArgumentException.class);
    }
}
