#!/usr/bin/env python3
"""The numbers of README.md's "Where the targets conflict": python3 testdata/conflict_bounds.py (about 20 s)

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


# 3. The bounds with every piece of information the fast test may use (threeway.go: canary, baseline
#    and stable), averaged over the diurnal phase (rate x (1 + 0.3 sin), as the scenarios), with a
#    randomized Neyman-Pearson test between the null's corner "canary and baseline both at F x 0.5%"
#    and the exact alternative "canary 10%, baseline 0.5%", stable's rate known exactly. Given the
#    request counts (ancillary), no test at level a does better at time t, however it looks: the event
#    "rolled back by t" is decided by the data up to t. So these bound every design, sequential or not.
from math import pi, sin, lgamma


def np_power2(n, p0, p1c, p1b, a):
    cells = []
    for xc in range(n + 1):
        q0c, q1c = pmf(n, xc, p0), pmf(n, xc, p1c)
        for xb in range(min(n, 30) + 1):
            q0, q1 = q0c * pmf(n, xb, p0), q1c * pmf(n, xb, p1b)
            if q0 > 0:
                cells.append((q1 / q0, q1, q0))
    cells.sort(key=lambda c: -c[0])
    fa = pw = 0.0
    for _, q1, q0 in cells:
        if fa + q0 > a:
            return pw + (a - fa) / q0 * q1  # randomized at the boundary: the exact NP bound
        fa += q0
        pw += q1
    return pw


def np_bound(t, F, a, rate, phases=12):
    tot = 0.0
    for i in range(phases):
        lam = rate * (1 + 0.3 * sin(2 * pi * (i + 0.5) / phases)) * t
        lo, hi = max(0, int(lam - 5 * lam**0.5)), int(lam + 5 * lam**0.5) + 3
        for n in range(lo, hi):
            w = exp(-lam + n * log(lam) - lgamma(n + 1))
            if w > 1e-6:
                tot += w * np_power2(n, F * 0.005, 0.10, 0.005, a)
    return tot / phases


for a in (0.004, 0.01):
    print(f"any test at level {a}, F=3, 200 req/s (5 canary + 5 baseline req/s): P(rolled back by t) <= " +
          ", ".join(f"{100 * np_bound(t, 3, a, 5.0):.1f}% at {t} s" for t in (9, 10)))
for a in (0.004, 0.01):
    print(f"any test at level {a}, F=3, 5 req/s (0.125 canary + 0.125 baseline req/s): P(rolled back within 15 min) <= {100 * np_bound(900, 3, a, 0.125):.1f}%")

# 4. The best test of the kind this package uses: the likelihood ratio of the exact alternative
#    against the null's corner (stable's rate known, so no conditioning), looked at after every
#    request, rejecting at 1/a (Ville's inequality; the e-process of a known alternative, the
#    fastest of its kind on average). Monte Carlo, 4,000 runs, seeded.
import random


def oracle(rng, rate, F, a, tmax):
    p0, p1c, p1b = F * 0.005, 0.10, 0.005
    jump = {(True, True): log(p1c / p0), (True, False): log((1 - p1c) / (1 - p0)),
            (False, True): log(p1b / p0), (False, False): log((1 - p1b) / (1 - p0))}
    r = rate * (1 + 0.3 * sin(rng.uniform(0, 2 * pi)))
    t = l = 0.0
    while True:
        t += rng.expovariate(2 * r)
        if t > tmax:
            return None
        canary = rng.random() < 0.5
        l += jump[(canary, rng.random() < (p1c if canary else p1b))]
        if l >= -log(a):
            return t


rng = random.Random(1)
for F in (3, 1.5):
    for a in (0.004, 0.01):
        ts = sorted(oracle(rng, 5.0, F, a, 600) or 1e9 for _ in range(4000))
        hit = sum(oracle(rng, 0.125, F, a, 900) is not None for _ in range(4000)) / 4000
        print(f"best e-process, F={F}, level {a}: 200 req/s median {ts[2000]:.1f} s after the split; 5 req/s within 15 min {100 * hit:.1f}%")

# 5. The same likelihood ratio as the fast test computes it (threeway.go): stable's rate unknown, so
#    conditioned on each slot's error count (1 s slots at 200 req/s, 30 s at 5), alternatives R = 12
#    and 24 mixed, looked at when a slot closes; F = 3, level 0.004 (1,500 runs each, seeded); no
#    per-instance or baseline condition, no load bursts.


def poisson(rng, lam):
    n, p, u = 0, exp(-lam), rng.random()
    while u > p:
        n += 1
        u *= rng.random()
    return n


def conditional(rng, F, a, rate=5.0, slot=1, tmax=600):
    r = rate * (1 + 0.3 * sin(rng.uniform(0, 2 * pi)))
    lr, t = [0.0, 0.0], 0
    while t + slot <= tmax:
        t += slot
        nc, nb, ns = poisson(rng, r * slot), poisson(rng, r * slot), poisson(rng, 38 * r * slot)
        xc = sum(rng.random() < 0.10 for _ in range(nc))
        xb = sum(rng.random() < 0.005 for _ in range(nb))
        xs = sum(rng.random() < 0.005 for _ in range(ns))
        if nc == 0 or xc + xb + xs == 0:
            continue
        z0 = F * (nc + nb) + ns
        for i, R in enumerate((4 * F, 8 * F)):
            B = max(1, (F * (nc + nb) - R * nc) / nb) if nb else 1
            z1 = R * nc + B * nb + ns
            lr[i] += xc * log(R / F * z0 / z1) + (xb * log(B / F * z0 / z1) if xb else 0) + (xs * log(z0 / z1) if xs else 0)
        if log((exp(lr[0]) + exp(lr[1])) / 2) >= -log(a):
            return t
    return 1e9


rng = random.Random(2)
ts = sorted(conditional(rng, 3, 0.004) for _ in range(1500))
print(f"the fast test's e-process (conditional on 1 s slots, R = 12 and 24), F=3, level 0.004: 200 req/s median {ts[750]} s after the split")
hit = sum(conditional(rng, 3, 0.004, 0.125, 30, 900) < 1e9 for _ in range(1500)) / 1500
print(f"the fast test's e-process (conditional on 30 s slots), F=3, level 0.004: 5 req/s within 15 min {100 * hit:.1f}%")

# 6. Measuring the fresh factor online (baseline vs stable) instead of allowing freshFactor: the
#    99.5% upper bound of the baseline/stable rate ratio when the baseline has shown no 5xx, given the
#    errors stable had meanwhile (conditional binomial, one look: any always-valid bound is wider).
for label, nb, ns, ks in (("200 req/s, 10 s", 50, 1900, 9.5), ("5 req/s, 15 min", 112.5, 4275, 21.4)):
    theta = 1 - 0.005 ** (1 / ks)
    print(f"fresh factor measured online, {label}: baseline {nb:g} requests, 0 errors, stable {ks:g} errors: upper bound {theta * ns / ((1 - theta) * nb):.1f}")
