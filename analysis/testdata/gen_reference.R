# Reference values for canaryctl's analysis package, generated ONCE with R and committed as
# r_reference.json (provenance inside the file). Regenerate with:
#
#   Rscript analysis/testdata/gen_reference.R > analysis/testdata/r_reference.json
#
# For each seeded dataset it records
#   - wilcox.test(x, y, exact = FALSE, correct = TRUE, conf.int = TRUE, conf.level = 0.98):
#     conf.int, p.value and estimate (R's estimate solves the *uncorrected* W(d) = 0);
#   - kayenta_emulation(x, y, 0.98): Kayenta's variant written with R primitives (continuity-corrected
#     estimate, error instead of NaN when every observation is tied), following
#     /work/shared/kayenta/R_WILCOX_NOTES.md. Its interval is R's; its estimate is Kayenta's.
# x is the canary (experiment), y the baseline (control). Samples are printed with 17 significant
# digits, which round-trips every double exactly.

RNGkind("Mersenne-Twister", "Inversion", "Rejection")

kayenta_emulation <- function(x, y, conf.level) {
  nx <- length(x)
  ny <- length(y)
  W <- function(d, zq) {
    dr <- rank(c(x - d, y))                       # average ranks over ties
    nties <- table(dr)
    dz <- sum(dr[seq_along(x)]) - nx * (nx + 1) / 2 - nx * ny / 2
    correction <- sign(dz) * 0.5                  # Kayenta always corrects, also for the estimate
    sigma <- sqrt((nx * ny / 12) * ((nx + ny + 1) - sum(nties^3 - nties) / ((nx + ny) * (nx + ny - 1))))
    if (sigma == 0) stop("cannot compute confidence interval when all observations are tied")
    (dz - correction) / sigma - zq
  }
  mumin <- min(x) - max(y)
  mumax <- max(x) - min(y)
  root <- function(zq) {
    f.lower <- W(mumin, zq)
    f.upper <- W(mumax, zq)
    if (f.lower <= 0) return(mumin)
    if (f.upper >= 0) return(mumax)
    uniroot(W, c(mumin, mumax), f.lower = f.lower, f.upper = f.upper, tol = 1e-4, zq = zq)$root
  }
  alpha <- 1 - conf.level
  ci <- c(root(qnorm(alpha / 2, lower.tail = FALSE)), root(qnorm(alpha / 2)))
  f.lower <- W(mumin, 0)
  f.upper <- W(mumax, 0)
  est <- if (f.lower == 0) mumin else if (f.upper == 0) mumax else
    uniroot(W, c(mumin, mumax), f.lower = f.lower, f.upper = f.upper, tol = 1e-4, zq = 0)$root
  list(conf.int = ci, estimate = est)
}

datasets <- list(
  list(name = "normal-10-vs-10-shift-1", gen = function() list(x = rnorm(10, 11), y = rnorm(10, 10))),
  list(name = "normal-50-vs-50-no-shift", gen = function() list(x = rnorm(50), y = rnorm(50))),
  list(name = "n1-canary-vs-n5-baseline", gen = function() list(x = 31.5, y = round(rnorm(5, 20, 3), 2))),
  list(name = "rounded-30-vs-80-shift-0.5", gen = function() list(x = round(rnorm(30, 5.5), 1), y = round(rnorm(80, 5), 1))),
  list(name = "poisson-counts-60-vs-60", gen = function() list(x = rpois(60, 3.5), y = rpois(60, 3))),
  list(name = "zero-heavy-errors-100-vs-100", gen = function() list(x = rbinom(100, 1, 0.15) * rexp(100), y = rbinom(100, 1, 0.08) * rexp(100))),
  list(name = "cauchy-40-vs-40-shift-2", gen = function() list(x = rcauchy(40, 2), y = rcauchy(40))),
  list(name = "lognormal-latency-200-vs-200-slowdown", gen = function() list(x = round(rlnorm(200, 3.1, 0.5), 1), y = round(rlnorm(200, 3, 0.5), 1))),
  list(name = "exponential-500-vs-300", gen = function() list(x = rexp(500, 0.9), y = rexp(300, 1))),
  list(name = "student-t2-25-vs-75", gen = function() list(x = rt(25, 2) + 0.3, y = rt(75, 2))),
  list(name = "micro-scale-100-vs-100", gen = function() list(x = rnorm(100, 3e-4, 1e-5), y = rnorm(100, 2.7e-4, 1e-5))),
  list(name = "large-scale-40-vs-40", gen = function() list(x = 1e6 + rnorm(40, 50, 100), y = 1e6 + rnorm(40, 0, 100))),
  list(name = "n2-vs-n2-disjoint", gen = function() list(x = c(10.5, 11.25), y = c(1.5, 2.75))),
  list(name = "integer-ms-1000-vs-1000-shift-1", gen = function() list(x = round(rnorm(1000, 101, 15)), y = round(rnorm(1000, 100, 15)))),
  list(name = "negative-values-70-vs-70", gen = function() list(x = rnorm(70, -48, 5), y = rnorm(70, -50, 5))),
  list(name = "bimodal-150-vs-120", gen = function() list(
    x = c(rnorm(100, 10), rnorm(50, 30)), y = c(rnorm(90, 10), rnorm(30, 30))))
)

num <- function(v) {
  s <- ifelse(is.nan(v), '"NaN"', ifelse(is.infinite(v), ifelse(v > 0, '"Infinity"', '"-Infinity"'), sprintf("%.17g", v)))
  paste0("[", paste(s, collapse = ", "), "]")
}
num1 <- function(v) { stopifnot(length(v) == 1); sub("^\\[(.*)\\]$", "\\1", num(v)) }
str <- function(s) paste0('"', gsub('"', '\\\\"', s), '"')

cases <- character(0)
for (i in seq_along(datasets)) {
  ds <- datasets[[i]]
  set.seed(20261122 + i)
  d <- ds$gen()
  r <- wilcox.test(d$x, d$y, exact = FALSE, correct = TRUE, conf.int = TRUE, conf.level = 0.98)
  k <- kayenta_emulation(d$x, d$y, 0.98)
  cases <- c(cases, paste0(
    '    {"name": ', str(ds$name), ', "seed": ', 20261122 + i, ',\n',
    '     "x": ', num(d$x), ',\n',
    '     "y": ', num(d$y), ',\n',
    '     "wilcox_test": {"conf_int": ', num(as.numeric(r$conf.int)), ', "p_value": ', num1(r$p.value),
    ', "estimate": ', num1(as.numeric(r$estimate)), '},\n',
    '     "kayenta_emulation": {"conf_int": ', num(k$conf.int), ', "estimate": ', num1(k$estimate), '}}'))
}

cat('{\n')
cat('  "provenance": {\n')
cat('    "generator": "analysis/testdata/gen_reference.R",\n')
cat('    "command": "Rscript analysis/testdata/gen_reference.R > analysis/testdata/r_reference.json",\n')
cat('    "r_version": ', str(R.version.string), ',\n', sep = "")
cat('    "platform": ', str(R.version$platform), ',\n', sep = "")
cat('    "generated": ', str(format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")), ',\n', sep = "")
cat('    "rng": "RNGkind(Mersenne-Twister, Inversion, Rejection); set.seed(20261122 + i) per case",\n')
cat('    "call": "wilcox.test(x, y, exact = FALSE, correct = TRUE, conf.int = TRUE, conf.level = 0.98)",\n')
cat('    "note": "x = canary, y = baseline. kayenta_emulation = R primitives with the continuity-corrected estimate (see gen_reference.R)"\n')
cat('  },\n')
cat('  "cases": [\n')
cat(paste(cases, collapse = ",\n"))
cat('\n  ]\n}\n')
