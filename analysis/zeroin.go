package analysis

import "math"

// Constants of Kayenta's BrentSolver (a port of R's R_zeroin2).
const (
	zeroinTolerance     = 1e-4                  // absolute (!) tolerance on the root
	zeroinEpsilon       = 2.220446049250313e-16 // DBL_EPSILON
	zeroinMaxIterations = 1000
)

// zeroin finds a zero of f in [ax, bx] given fa = f(ax) and fb = f(bx), step for step like Kayenta's
// BrentSolver.solve (R's zeroin: bisection, secant and inverse quadratic interpolation). Because the
// Wilcoxon statistic is a step function and the tolerance is absolute, the root it returns depends on
// the exact iteration path, so the arithmetic below keeps Java's operation order; float64(...)
// conversions stop the compiler from fusing multiply-adds. After 1001 iterations without convergence it
// returns the last iterate, as Kayenta does. An error from f aborts the search.
func zeroin(ax, bx, fa, fb float64, f func(float64) (float64, error)) (float64, error) {
	a, b := ax, bx
	c, fc := a, fa
	if isZeroULP(fa) {
		return a, nil
	}
	if isZeroULP(fb) {
		return b, nil
	}
	for iter := zeroinMaxIterations + 1; iter > 0; iter-- {
		prevStep := b - a
		if math.Abs(fc) < math.Abs(fb) {
			a, b, c = b, c, b
			fa, fb, fc = fb, fc, fb
		}
		tolAct := float64(2*zeroinEpsilon*math.Abs(b)) + zeroinTolerance/2
		newStep := (c - b) / 2
		if math.Abs(newStep) <= tolAct || isZeroULP(fb) {
			return b, nil
		}
		if math.Abs(prevStep) >= tolAct && math.Abs(fa) > math.Abs(fb) {
			var p, q float64
			cb := c - b
			if a == c { // linear (secant) interpolation
				t1 := fb / fa
				p = cb * t1
				q = 1.0 - t1
			} else { // inverse quadratic interpolation
				q = fa / fc
				t1 := fb / fc
				t2 := fb / fa
				p = t2 * (float64(float64(cb*q)*(q-t1)) - float64((b-a)*(t1-1.0)))
				q = float64((q-1.0)*(t1-1.0)) * (t2 - 1.0)
			}
			if p > 0.0 {
				q = -q
			} else {
				p = -p
			}
			if p < float64(float64(0.75*cb)*q)-math.Abs(tolAct*q)/2 && p < math.Abs(prevStep*q/2) {
				newStep = p / q
			}
		}
		if math.Abs(newStep) < tolAct {
			if newStep > 0 {
				newStep = tolAct
			} else {
				newStep = -tolAct
			}
		}
		a, fa = b, fb
		b += newStep
		var err error
		if fb, err = f(b); err != nil {
			return 0, err
		}
		if (fb > 0 && fc > 0) || (fb < 0 && fc < 0) {
			c, fc = a, fa
		}
	}
	return b, nil
}

// isZeroULP is commons-math Precision.equals(v, 0): v is within one ulp of zero (and not NaN).
func isZeroULP(v float64) bool {
	return math.Abs(v) <= math.SmallestNonzeroFloat64
}
