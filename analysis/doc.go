// Package analysis holds the pure statistics behind canaryctl's Kayenta-style judge: the asymptotic
// Mann-Whitney (Wilcoxon rank-sum) confidence interval exactly as Kayenta computes it, R's two-sided
// p-value, commons-math compatible descriptive statistics (R-7 percentiles, two-pass mean and variance),
// outlier detectors and effect sizes.
//
// Every function is pure: no I/O, no logging, no global state, safe for concurrent use. Inputs are never
// modified. Numbers are meant to match Kayenta (spinnaker/kayenta a69573be, commons-math 3.6.1) bit for
// bit where that is possible; every known departure is documented on the function concerned.
//
// Argument order follows Kayenta: x (or experiment) is the canary, y (or control) is the baseline, and
// intervals describe the location shift x - y.
package analysis
