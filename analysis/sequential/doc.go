// Package sequential holds canaryctl's request-level, always-valid statistics: tests that may be looked
// at after every batch of requests, as often as the caller likes, while the chance of a false "Fail"
// stays below the configured alpha. It is pure (no I/O, no clock) and knows nothing of gateways.
//
// # Why not a fixed-horizon test
//
// Kayenta compares per-interval series with a Mann-Whitney test whose error rate holds for one look at
// a sample size fixed in advance. A rollout looks again and again, and every look is another chance of
// a false alarm. Here every test is an e-process: a non-negative supermartingale under the null
// hypothesis, so by Ville's inequality (J. Ville, Étude critique de la notion de collectif, 1939) the
// probability that it ever exceeds 1/alpha is at most alpha, whenever and however often it is checked
// (Johari, Koomen, Pekelis, Walsh, "Always valid inference: continuous monitoring of A/B tests",
// Operations Research 70(3), 2022; Ramdas, Grünwald, Vovk, Shafer, "Game-theoretic statistics and
// safe anytime-valid inference", Statistical Science 38(4), 2023).
//
// # The tests
//
// PairedTest: canary and baseline requests are paired within time slots and each pair gives a
// difference D in {-1, 0, +1}: for the 5xx rate D = 1{canary failed} - 1{baseline failed}; for a
// latency quantile q, D = 1{canary > t} - 1{baseline > t} where t is the baseline's running q-quantile
// estimated only from earlier requests (a predictable threshold). Under "canary no worse" E[D | past] <=
// 0, whatever the error rate or latency distribution, because the two requests of a pair are
// exchangeable given the past. The test bets on D: the wealth prod(1 + lambda (D - m)) is a
// non-negative supermartingale when E[D] <= m (Waudby-Smith and Ramdas, "Estimating means of bounded
// random variables by betting", JRSS-B 86(1), 2024). A uniform mixture over a fixed grid of bets is
// itself a supermartingale (Robbins' method of mixtures: H. Robbins, "Statistical methods related to
// the law of the iterated logarithm", Ann. Math. Statist. 41(5), 1970), and with constant bets the
// wealth depends only on the counts of +1, 0 and -1, so it is exact and cheap. Inverting the test in
// m gives a confidence sequence for E[D], reported as the interval of every verdict. A zero-error
// baseline is no special case: every canary 5xx paired with a baseline 2xx multiplies the wealth.
// The quantile form follows the idea of Howard and Ramdas, "Sequential estimation of quantiles with
// applications to A/B-testing and best-arm identification", Bernoulli 28(3), 2022: compare the
// canary's exceedance of a baseline quantile with the baseline's own.
//
// RatioTest: a fast guard for gross error regressions that also uses stable's traffic (same version
// as baseline, 20-40 times the requests). Conditional on the number k of 5xx in a batch, the number in
// the canary is Binomial(k, r n_c/(r n_c + n_0)) where r is the canary/control rate ratio (exact for
// Poisson counts; for Bernoulli requests at r = 1 the hypergeometric it really is is dominated in
// convex order by that binomial, W. Hoeffding, "Probability inequalities for sums of bounded random
// variables", JASA 58, 1963, Theorem 4, so the test stays valid). A mixture of the likelihood ratios of
// r = 4·r0 and r = 16·r0 against the tolerated ratio r0 is an e-process for H0: r <= r0 (the same construction as
// Lindon and Malek, "Anytime-valid inference for multinomial count data", NeurIPS 2022). The
// tolerance r0 > 1 keeps a small real difference between a warm stable and a fresh canary from
// causing a rollback. (For Bernoulli requests at r0 > 1 the binomial model is an approximation, close
// when errors are rare; TestRatioFalseAlarmUnderContinuousMonitoring checks it at r0 = 1.5.)
//
// The same construction over three cohorts with a shifted null (the canary's rate at most the
// baseline's and at most FreshFactor times stable's: threeway.go) and no cap is the fast 5xx test
// (fast.go): the path for large regressions, which must be
// rolled back in seconds, where the capped, per-instance-confirmed tests of correlated production
// traffic take minutes. Pairing within time slots (slots.go), the block cap and the per-instance
// confirmation are explained in README.md, with the assumptions each guarantee rests on.
//
// With sticky cohorts (each client on one cohort) the paired metrics' Fails come from a
// randomization test over clients instead (clusters.go): the gateway's hash assigns clients at
// random, so under "the canary is the baseline" the difference of the canary's and the baseline's
// client means in a window has mean 0 over the assignments (Fisher's randomization test, R. A.
// Fisher, The Design of Experiments, 1935), and betting on it window after window is an e-process
// (the testing-by-betting view of Shafer, "Testing by betting", JRSS-A 184(2), 2021).
//
// Alpha is split between the tests (Bonferroni): 40% to the fast 5xx test, 10% to the guard, 50% to
// the three paired tests.
//
// # Three verdicts
//
// Fail: the lower bound of the confidence sequence for the difference is above the tolerance (evidence
// the canary is worse; probability <= alpha when it is not). Pass: the upper bound at level beta is below
// the margin (evidence the canary is not worse than the margin, the minimum detectable effect;
// probability <= beta when it is). Otherwise NeedMoreData, with an estimate of how many more request
// pairs would settle it for the configured margin. Lack of data is never a Fail.
package sequential
