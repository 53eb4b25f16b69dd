#!/usr/bin/env python3
"""Independent reference values for package sequential (run: python3 gen_reference.py > reference.json).

Re-implements the formulas from the package documentation with Python's math module only (no code
shared with the Go implementation): the mixture e-values of the paired test over the eight bets
s_k = 0.05 * 19**(k/7), and the conditional-binomial mixture e-value of the ratio test (alternatives 4 and 16 times the null).
"""
import json, math

S = [0.05 * 19 ** (k / 7) for k in range(8)]

def mean_exp(logs):
    m = max(logs)
    return m + math.log(sum(math.exp(v - m) for v in logs) / len(logs))

def log_fail_e(p, z, n, m):
    return mean_exp([p * math.log(1 + s / (1 + m) * (1 - m)) + z * math.log(1 - s / (1 + m) * m)
                     + n * math.log(1 - s / (1 + m) * (1 + m)) for s in S])

def log_pass_e(p, z, n, m):
    return mean_exp([p * math.log(1 - s / (1 - m) * (1 - m)) + z * math.log(1 + s / (1 - m) * m)
                     + n * math.log(1 + s / (1 - m) * (1 + m)) for s in S])

def lower(p, z, n, alpha):
    lim, lo, hi = -math.log(alpha), -1.0, 1.0
    if log_fail_e(p, z, n, lo + 1e-12) < lim:
        return -1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_fail_e(p, z, n, mid) >= lim else (lo, mid)
    return lo

def upper(p, z, n, beta):
    lim, lo, hi = -math.log(beta), -1.0, 1.0
    if log_pass_e(p, z, n, hi - 1e-12) < lim:
        return 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if log_pass_e(p, z, n, mid) >= lim else (mid, hi)
    return hi

def ratio_log_e(batches, r0):
    # batches: (canary errors, canary requests, control errors, control requests)
    def ll(r):
        tot = 0.0
        for x, nc, y, n0 in batches:
            if x + y == 0 or nc == 0 or n0 == 0:
                continue
            th = r * nc / (r * nc + n0)
            tot += x * math.log(th) + y * math.log(1 - th)
        return tot
    base = ll(r0)
    return mean_exp([ll(r0 * 4) - base, ll(r0 * 16) - base])

paired = []
for (p, z, n) in [(3, 0, 0), (10, 80, 2), (40, 900, 12), (300, 400, 300), (5, 2000, 9), (0, 50, 0)]:
    for m in (0.0, 0.01, 0.1):
        paired.append({"plus": p, "zero": z, "minus": n, "m": m,
                       "logFailE": log_fail_e(p, z, n, m), "logPassE": log_pass_e(p, z, n, m)})
bounds = []
for (p, z, n) in [(10, 80, 2), (40, 900, 12), (300, 400, 300), (5, 2000, 9)]:
    bounds.append({"plus": p, "zero": z, "minus": n, "alpha": 0.0025, "beta": 0.05,
                   "lower": lower(p, z, n, 0.0025), "upper": upper(p, z, n, 0.05)})
ratio = []
for batches, r0 in [([(2, 5, 1, 195), (1, 5, 0, 195), (0, 5, 2, 195)], 1.0),
                    ([(1, 5, 1, 195)] * 10, 1.5),
                    ([(3, 50, 1, 1950), (2, 50, 0, 1950)], 2.0)]:
    ratio.append({"batches": batches, "tolerance": r0, "logE": ratio_log_e(batches, r0)})
print(json.dumps({"source": "analysis/sequential/testdata/gen_reference.py (Python 3, math module only)",
                  "paired": paired, "bounds": bounds, "ratio": ratio}, indent=1))
