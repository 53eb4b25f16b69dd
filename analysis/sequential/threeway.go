package sequential

import (
	"fmt"
	"math"
)

// The fast 5xx test's null, baseline first: canary, baseline and stable compared at once.
//
// The older fast test compared the canary with baseline plus stable pooled, against "the canary
// fails at most FreshFactor (F) times as often". That null lets a good canary fail F times as often
// as warm stable because its instances are fresh, but it throws away what the baseline says: the
// baseline is deployed with the canary and is as fresh, so a good canary fails no more often than the
// baseline. threeWay tests
//
//	H0: rho_c <= min(rho_b, F)
//
// where rho_c and rho_b are the canary's and the baseline's 5xx rates as multiples of stable's in the
// same slot (rho_b may be anything: a baseline that fails more, fresh or unlucky, only makes the
// canary look better). Every good canary of the library is inside it: canary and baseline alike,
// fresh up to F. A cold start beyond F (both at 6x) is outside, but canary and baseline errors then
// cancel (see below), and the baseline comparison of fastTest still holds at 1/FastBaselineEvidence.
//
// Construction. Conditional on a slot's error count k, the errors of the three cohorts are
// multinomial with cell probabilities proportional to (n_c·rho_c, n_b·rho_b, n_s) (exact for Poisson
// counts; stable's unknown rate cancels, so the test holds however it moves between slots). The
// alternative of a slot is (R, B): the canary at R·stable (R = 4F or 8F, the fast test's
// alternatives), the baseline at B·stable with B = 1 (as warm as stable) unless the slot has so much
// more baseline than canary traffic that a larger B is needed for validity (below). Its likelihood
// ratio against the null's point (F, F), per error of each cohort, is
//
//	w_c = (R/F)·Z0/Z1,  w_b = (B/F)·Z0/Z1,  w_s = Z0/Z1,  Z0 = F(n_c+n_b) + n_s, Z1 = R·n_c + B·n_b + n_s
//
// and E[prod w^x | k] = (sum_i pi_i w_i)^k for the true cell probabilities pi. The sum is at most 1
// everywhere in H0: it is 1 at (F, F) by construction; in (rho_c, rho_b) it is a linear-fractional
// function whose sign of (sum - 1) is that of n_c·rho_c(w_c-1) + n_b·rho_b(w_b-1) + n_s(w_s-1),
// linear in the two ratios; w_b <= 1 makes it largest at rho_b = rho_c, and on that edge it is
// largest at an end: rho = F (where it is 0) or rho = 0, where it is n_s(w_s-1) <= 0 when Z1 >= Z0,
// i.e. R·n_c + B·n_b >= F(n_c+n_b). B = max(1, (F(n_c+n_b) - R·n_c)/n_b) ensures it (and B <= F since
// R >= F, so w_b <= Z0/Z1 <= 1). So each alternative's likelihood ratio is a supermartingale under H0
// whatever the slots' compositions (chosen per slot from its counts, which the test conditions on),
// their mixture too, and Ville's inequality bounds the chance it ever reaches 1/alpha by alpha. With
// no stable request in a slot (the 50/50 step) the same algebra gives a canary-vs-baseline test of
// rho_c <= rho_b.
//
// What it buys: per error, the baseline's are evidence too. In a slot of 5 canary, 5 baseline and
// 190 stable requests with F = 3, each baseline error multiplies the e-value by about 0.3 and each
// missing one (a baseline quieter than F x stable) is a small gain; a canary and a baseline that fail
// alike, whatever their fresh factor, roughly cancel (at both x6, a cold start outside H0, the
// e-value's drift is still negative, though its swings reach 1/alpha more often than alpha). Measured with the engine: the 10%-5xx canary at 200 req/s rolled back
// about 1 s sooner (median), at 5 req/s about 5 points more often within 15 minutes.
type threeWay struct {
	fresh float64
	alt   [2]float64 // R of each alternative
	logLR [2]float64 // each alternative's log likelihood ratio so far
	limit float64    // log(1/alpha)
	// counts, for reports
	canaryE, canaryN, baseE, baseN, stableE, stableN int64
}

// newThreeWay returns the test of H0: rho_c <= min(rho_b, fresh) at level alpha with the canary's
// alternatives at fresh·2^(off/4) for the grid offsets off (fastAlts).
func newThreeWay(alpha, fresh float64, offs [2]int) (*threeWay, error) {
	if !(alpha > 0 && alpha < 1) || !(fresh >= 1 && fresh <= 1024) {
		return nil, fmt.Errorf("three-way 5xx test: alpha %v, fresh factor %v out of range", alpha, fresh)
	}
	t := &threeWay{fresh: fresh, limit: -math.Log(alpha)}
	for i, o := range offs {
		if o <= 0 {
			return nil, fmt.Errorf("three-way 5xx test: alternative offset %d must be positive", o)
		}
		t.alt[i] = fresh * math.Pow(2, float64(o)/ratioStep)
	}
	return t, nil
}

// add records one slot: the canary's, the baseline's and stable's errors and requests.
func (t *threeWay) add(xc, nc, xb, nb, xs, ns int64) {
	if xc < 0 || xb < 0 || xs < 0 || xc > nc || xb > nb || xs > ns {
		panic(fmt.Sprintf("sequential: invalid counts %d/%d, %d/%d, %d/%d", xc, nc, xb, nb, xs, ns))
	}
	t.canaryE += xc
	t.canaryN += nc
	t.baseE += xb
	t.baseN += nb
	t.stableE += xs
	t.stableN += ns
	if nc == 0 || nb+ns == 0 || xc+xb+xs == 0 {
		return // no canary request, no control, or no error: the slot's likelihood ratio is 1
	}
	f := t.fresh
	c, b, s := float64(nc), float64(nb), float64(ns)
	z0 := f*(c+b) + s
	for i, r := range t.alt {
		bAlt := 1.0
		if nb > 0 {
			bAlt = max(1, (f*(c+b)-r*c)/b)
		}
		z1 := r*c + bAlt*b + s
		l := float64(xc) * math.Log(r/f*z0/z1)
		if xb > 0 {
			l += float64(xb) * math.Log(bAlt/f*z0/z1)
		}
		if xs > 0 {
			l += float64(xs) * math.Log(z0/z1)
		}
		t.logLR[i] += l
	}
}

// logE is the log of the mixture e-value (the alternatives weighted equally).
func (t *threeWay) logE() float64 { return logMeanExp(t.logLR[:]) }

// exceeds reports whether the e-value is at 1/alpha now.
func (t *threeWay) exceeds() bool { return t.logE() >= t.limit }
