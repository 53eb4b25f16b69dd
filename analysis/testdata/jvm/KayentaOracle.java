// JVM oracle for canaryctl's analysis package: runs commons-math 3.6.1 and Kayenta's own BrentSolver on
// seeded datasets and prints jvm_reference.json. It lives in Kayenta's package only because
// BrentSolver.solve is package-private; BrentSolver.java itself is compiled from the Kayenta checkout
// (spinnaker/kayenta a69573be) at generation time and is not part of canaryctl. See gen_jvm_reference.sh.
//
// wilcoxonDiff and calculateConfidenceInterval below are a Java transcription of Kayenta's
// MannWhitney.scala (same operation order); everything else is the upstream library code.
package com.netflix.kayenta.mannwhitney;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import org.apache.commons.math3.distribution.NormalDistribution;
import org.apache.commons.math3.stat.StatUtils;
import org.apache.commons.math3.stat.descriptive.rank.Percentile;
import org.apache.commons.math3.stat.descriptive.rank.Percentile.EstimationType;
import org.apache.commons.math3.stat.ranking.NaNStrategy;
import org.apache.commons.math3.stat.ranking.NaturalRanking;
import org.apache.commons.math3.stat.ranking.TiesStrategy;

public class KayentaOracle {

  static double wilcoxonDiff(double mu, double quantile, double[] x, double[] y) {
    double xLen = x.length, yLen = y.length;
    double[] v = new double[x.length + y.length];
    for (int i = 0; i < x.length; i++) v[i] = x[i] - mu;
    System.arraycopy(y, 0, v, x.length, y.length);
    double[] dr = new NaturalRanking(NaNStrategy.MAXIMAL, TiesStrategy.AVERAGE).rank(v);
    Map<Double, Integer> ties = new HashMap<>();
    for (double r : dr) ties.merge(r, 1, Integer::sum);
    double rankSum = 0;
    for (int i = 0; i < x.length; i++) rankSum += dr[i];
    double dz = rankSum - xLen * (xLen + 1) / 2 - xLen * yLen / 2;
    double sg = Math.signum(dz);
    double correction = (Double.isNaN(sg) ? 0 : sg) * 0.5;
    double tieSum = 0;
    for (int t : ties.values()) tieSum += Math.pow(t, 3) - t;
    double sigma = Math.sqrt((xLen * yLen / 12) * ((xLen + yLen + 1) - tieSum / ((xLen + yLen) * (xLen + yLen - 1))));
    if (sigma == 0) throw new IllegalArgumentException("cannot compute confidence interval when all observations are tied");
    return (dz - correction) / sigma - quantile;
  }

  // Scala 2.12 Array[Double].min / max: reduceLeft with IEEE <= / >=.
  static double scalaMin(double[] a) { double m = a[0]; for (double v : a) m = (m <= v) ? m : v; return m; }
  static double scalaMax(double[] a) { double m = a[0]; for (double v : a) m = (m >= v) ? m : v; return m; }

  static double[] interval(double[] x, double[] y, double conf) {
    double alpha = 1.0 - conf;
    double muMin = scalaMin(x) - scalaMax(y);
    double muMax = scalaMax(x) - scalaMin(y);
    double zq = new NormalDistribution(0, 1).inverseCumulativeProbability(alpha / 2);
    double lower = root(x, y, muMin, muMax, -zq);
    double upper = root(x, y, muMin, muMax, zq);
    double fLo = wilcoxonDiff(muMin, 0, x, y), fHi = wilcoxonDiff(muMax, 0, x, y);
    double est = BrentSolver.solve(muMin, muMax, fLo, fHi, d -> wilcoxonDiff(d, 0, x, y));
    return new double[] {lower, upper, est};
  }

  static double root(double[] x, double[] y, double muMin, double muMax, double zq) {
    double fLo = wilcoxonDiff(muMin, zq, x, y), fHi = wilcoxonDiff(muMax, zq, x, y);
    if (fLo <= 0) return muMin;
    if (fHi >= 0) return muMax;
    return BrentSolver.solve(muMin, muMax, fLo, fHi, d -> wilcoxonDiff(d, zq, x, y));
  }

  // ---- dataset generation (java.util.Random, fixed seeds) ----

  static double[] sample(Random r, String kind, int n, double shift) {
    double[] v = new double[n];
    for (int i = 0; i < n; i++) {
      double g = r.nextGaussian();
      switch (kind) {
        case "normal": v[i] = 50 + 10 * g + shift; break;
        case "rounded": v[i] = Math.round((20 + 3 * g + shift) * 10) / 10.0; break;
        case "integers": v[i] = Math.round(5 + 2 * g + shift); break;
        case "zeroheavy": v[i] = r.nextInt(5) == 0 ? Math.abs(g) + shift : 0; break;
        case "lognormal": v[i] = Math.exp(3 + 0.5 * g) + shift; break;
        case "micro": v[i] = 0.0333 + 1e-6 * g + shift * 1e-6; break;
        case "large": v[i] = 1e9 + 1e3 * g + shift * 1e3; break;
        case "negative": v[i] = -50 + 5 * g + shift; break;
        default: throw new IllegalArgumentException(kind);
      }
    }
    return v;
  }

  static String num(double v) {
    if (Double.isNaN(v)) return "\"NaN\"";
    if (Double.isInfinite(v)) return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return Double.toString(v); // Java prints enough digits to identify the double uniquely
  }

  static String arr(double[] a) {
    StringBuilder b = new StringBuilder("[");
    for (int i = 0; i < a.length; i++) { if (i > 0) b.append(", "); b.append(num(a[i])); }
    return b.append("]").toString();
  }

  public static void main(String[] args) {
    Locale.setDefault(Locale.ROOT);
    StringBuilder out = new StringBuilder();
    out.append("{\n  \"provenance\": {\n");
    out.append("    \"generator\": \"analysis/testdata/jvm/gen_jvm_reference.sh (KayentaOracle.java)\",\n");
    out.append("    \"java\": \"" + System.getProperty("java.vm.name") + " " + System.getProperty("java.version") + "\",\n");
    out.append("    \"libraries\": \"commons-math3 3.6.1 (Debian libcommons-math3-java 3.6.1-3); Kayenta BrentSolver.java at a69573be\",\n");
    out.append("    \"generated\": \"" + java.time.Instant.now().toString() + "\"\n  },\n");

    // 1. Normal quantiles on a grid covering the three branches of erfInv.
    List<String> q = new ArrayList<>();
    NormalDistribution nd = new NormalDistribution(0, 1);
    List<Double> ps = new ArrayList<>();
    for (int k = 1; k < 1000; k++) ps.add(k / 1000.0);
    for (int e = 1; e <= 20; e++) { ps.add(Math.pow(10, -e)); ps.add(1 - Math.pow(10, -e)); }
    for (int c = 500; c < 1000; c += 7) ps.add((1.0 - c / 1000.0) / 2);
    for (double p : ps) q.add("[" + num(p) + ", " + num(nd.inverseCumulativeProbability(p)) + "]");
    out.append("  \"normal_quantile\": [\n    ").append(String.join(",\n    ", q)).append("\n  ],\n");

    // 2. Mann-Whitney intervals and 3. descriptive statistics on seeded datasets.
    String[] kinds = {"normal", "rounded", "integers", "zeroheavy", "lognormal", "micro", "large", "negative"};
    int[] sizes = {1, 2, 3, 5, 10, 30, 100, 400};
    double[] confs = {0.98, 0.95, 0.9};
    Random r = new Random(20261122L);
    List<String> cases = new ArrayList<>();
    for (int i = 0; i < 80; i++) {
      String kx = kinds[i % kinds.length];
      int nx = sizes[r.nextInt(sizes.length)], ny = sizes[r.nextInt(sizes.length)];
      double shift = r.nextInt(3) == 0 ? 0 : r.nextGaussian() * 3;
      double[] x = sample(r, kx, nx, shift), y = sample(r, kx, ny, 0);
      double conf = confs[i % confs.length];
      String mw;
      try {
        double[] iv = interval(x, y, conf);
        mw = "{\"lower\": " + num(iv[0]) + ", \"upper\": " + num(iv[1]) + ", \"estimate\": " + num(iv[2]) + "}";
      } catch (IllegalArgumentException e) {
        mw = "{\"error\": \"" + e.getMessage() + "\"}";
      }
      double[] pct = {1, 5, 25, 50, 75, 90, 99, 100};
      double[] pv = new double[pct.length];
      Percentile p7 = new Percentile().withEstimationType(EstimationType.R_7);
      for (int k = 0; k < pct.length; k++) pv[k] = p7.evaluate(x, pct[k]);
      double[] ranks = new NaturalRanking(NaNStrategy.MAXIMAL, TiesStrategy.AVERAGE).rank(concat(x, y));
      double r1 = 0;
      for (int k = 0; k < x.length; k++) r1 += ranks[k];
      double cles = (2 * r1 - x.length * (x.length + 1)) / (2 * y.length * x.length);
      cases.add("    {\"name\": \"" + i + "-" + kx + "-" + nx + "-vs-" + ny + "\", \"conf\": " + num(conf) + ",\n"
          + "     \"x\": " + arr(x) + ",\n     \"y\": " + arr(y) + ",\n"
          + "     \"interval\": " + mw + ",\n"
          + "     \"percentiles_p\": " + arr(pct) + ", \"percentiles_x\": " + arr(pv) + ",\n"
          + "     \"mean_x\": " + num(StatUtils.mean(x)) + ", \"variance_x\": " + num(StatUtils.variance(x))
          + ", \"population_variance_x\": " + num(StatUtils.populationVariance(x))
          + ", \"cles_y_x\": " + num(cles) + "}");
    }
    out.append("  \"cases\": [\n").append(String.join(",\n", cases)).append("\n  ]\n}\n");
    System.out.print(out);
  }

  static double[] concat(double[] a, double[] b) {
    double[] c = new double[a.length + b.length];
    System.arraycopy(a, 0, c, 0, a.length);
    System.arraycopy(b, 0, c, a.length, b.length);
    return c;
  }
}
