#!/usr/bin/env python3
"""The numbers of README.md's "Where the targets conflict": python3 testdata/conflict_bounds.py

1. Neyman-Pearson bound at a 2.5% step of 200 req/s (5 canary and 5 baseline requests/s): the best
   power of any single-look test at t seconds between "canary 10%, baseline 0.5%" and "both at p0"
   (p0 = 3%: cold start x6; 1.5%: fresh x3), at a false-alarm rate of at most 1%, by exact
   enumeration of the two binomial counts (the likelihood-ratio ordering; the last cell that would
   exceed 1% is left out, so the achieved rate is printed).
2. At 5 req/s (0.125 canary requests/s at 2.5%) for 15 minutes: the best log likelihood ratio k
   canary errors give against "canary rate <= R x control" (control 0.5%), and P(Poisson >= k).
"""
from math import comb, exp, log, factorial


def pmf(n, k, p):
    return comb(n, k) * p**k * (1 - p) ** (n - k)


def np_power(n, p1c, p1b, p0c, p0b, a):
    cells = []
    for xc in range(n + 1):
        for xb in range(n + 1):
            q1 = pmf(n, xc, p1c) * pmf(n, xb, p1b)
            q0 = pmf(n, xc, p0c) * pmf(n, xb, p0b)
            cells.append((q1 / q0, q1, q0))
    cells.sort(key=lambda c: -c[0])
    fa = pw = 0.0
    for _, q1, q0 in cells:
        if fa + q0 > a:
            break
        fa += q0
        pw += q1
    return pw, fa


for t in (8, 10, 12, 15):
    for p0 in (0.03, 0.015):
        pw, fa = np_power(5 * t, 0.10, 0.005, p0, p0, 0.01)
        print(f"NP bound t={t:2d}s n={5 * t}: null both at {100 * p0:.1f}%: power {100 * pw:.1f}% at false alarm {100 * fa:.2f}%")

mu0 = 0.125 * 900 * 0.005  # errors stable's rate predicts in the canary's 112.5 requests
mean = 0.125 * 900 * 0.10  # errors a 10%-5xx canary has
for R in (3, 1.5):
    for k in range(5, 10):
        r1 = k / mu0  # the best alternative ratio
        llr = k * log(r1 / R) - mu0 * (r1 - R) if r1 > R else 0.0
        tail = 1 - sum(exp(-mean) * mean**j / factorial(j) for j in range(k))
        print(f"5 req/s, 15 min, tolerated ratio {R}: {k} errors give at best log LR {llr:.2f}; P(Poisson({mean:.1f}) >= {k}) = {100 * tail:.1f}%")
