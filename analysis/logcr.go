package analysis

import "math"

// logCR returns the natural logarithm of a rounded to nearest in all but astronomically rare cases.
// commons-math's FastMath.log, which Kayenta's normal quantile goes through, is (nearly) correctly
// rounded while Go's math.Log may be off by one ulp (e.g. for 0.35999999999999993, which is the
// logarithm behind the quantile for p = 0.1). The value is computed in double-double arithmetic:
// a = m * 2^k with m in [sqrt(1/2), sqrt(2)), log(a) = k*ln2 + 2*atanh((m-1)/(m+1)), about 100 bits
// of precision, then rounded once.
func logCR(a float64) float64 {
	if !(a > 0) || math.IsInf(a, 1) {
		return math.Log(a) // NaN, -Inf for 0, NaN for negatives, +Inf
	}
	m, k := math.Frexp(a) // a = m * 2^k, m in [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2
		k--
	}
	// s = (m - 1)/(m + 1) in double-double; m - 1 is exact (Sterbenz), m + 1 may round.
	num := dd{m - 1, 0}
	den := twoSum(m, 1)
	s := num.div(den)
	s2 := s.mul(s)
	// atanh(s) = s * sum_{i>=0} s^(2i) / (2i + 1); |s| <= 0.1716, s^2 <= 0.0295, 24 terms reach 1e-36.
	var sum dd
	for i := 23; i >= 0; i-- {
		sum = sum.mul(s2).add(dd{1, 0}.divInt(2*i + 1))
	}
	logm := s.mul(sum).scale(2)
	res := ln2dd.mulFloat(float64(k)).add(logm)
	return res.hi + res.lo
}

// dd is an unevaluated sum hi + lo with |lo| <= ulp(hi)/2.
type dd struct{ hi, lo float64 }

// ln2dd is ln 2 to about 107 bits.
var ln2dd = dd{0.6931471805599453094172321214581766, 2.3190468138462996154e-17}

func twoSum(a, b float64) dd {
	s := a + b
	bb := s - a
	return dd{s, (a - (s - bb)) + (b - bb)}
}

func quickTwoSum(a, b float64) dd {
	s := a + b
	return dd{s, b - (s - a)}
}

func twoProd(a, b float64) dd {
	p := a * b
	return dd{p, math.FMA(a, b, -p)}
}

func (x dd) add(y dd) dd {
	s := twoSum(x.hi, y.hi)
	t := twoSum(x.lo, y.lo)
	s.lo += t.hi
	s = quickTwoSum(s.hi, s.lo)
	s.lo += t.lo
	return quickTwoSum(s.hi, s.lo)
}

func (x dd) mul(y dd) dd {
	p := twoProd(x.hi, y.hi)
	p.lo += x.hi*y.lo + x.lo*y.hi
	return quickTwoSum(p.hi, p.lo)
}

func (x dd) mulFloat(f float64) dd {
	p := twoProd(x.hi, f)
	p.lo += x.lo * f
	return quickTwoSum(p.hi, p.lo)
}

func (x dd) scale(f float64) dd { return dd{x.hi * f, x.lo * f} } // f a power of two

// div returns x / y with one Newton correction of the double quotient.
func (x dd) div(y dd) dd {
	q1 := x.hi / y.hi
	r := x.add(y.mulFloat(-q1))
	q2 := r.hi / y.hi
	r = r.add(y.mulFloat(-q2))
	q3 := r.hi / y.hi
	q := quickTwoSum(q1, q2)
	return q.add(dd{q3, 0})
}

func (x dd) divInt(n int) dd { return x.div(dd{float64(n), 0}) }
