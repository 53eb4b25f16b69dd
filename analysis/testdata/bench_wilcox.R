# Times R's wilcox.test with Kayenta's options on the samples of BenchmarkMannWhitney/n=100k.
#
#   go test ./analysis -run TestWriteBenchmarkData -benchdata /tmp/mw100k.csv
#   Rscript analysis/testdata/bench_wilcox.R /tmp/mw100k.csv
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
cat(R.version.string, "\n")
cat("n.x =", length(d$x), " n.y =", length(d$y), "\n")
for (i in 1:3) {
  tm <- system.time(r <- wilcox.test(d$x, d$y, exact = FALSE, correct = TRUE, conf.int = TRUE, conf.level = 0.98))
  cat(sprintf("run %d: elapsed %.3f s (user %.3f s)  conf.int [%.17g, %.17g]  p %.17g\n",
              i, tm[["elapsed"]], tm[["user.self"]], r$conf.int[1], r$conf.int[2], r$p.value))
}
