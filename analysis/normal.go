package analysis

import "math"

// NormalQuantile returns the p-quantile of the standard normal distribution the way commons-math 3.6.1
// computes it (NormalDistribution(0, 1).inverseCumulativeProbability, i.e. sqrt(2)*erfInv(2p-1) with Mike
// Giles' polynomial approximation of erfInv). Kayenta uses it for the confidence interval, so it is
// reproduced rather than replaced by a more accurate quantile: for p = 0.01 (confidence 0.98) it
// returns -2.326347874040841, one ulp away from R's qnorm. The logarithm inside is correctly rounded
// (logCR) like commons-math's FastMath.log, not math.Log, which can be an ulp off; the result matched
// commons-math bit for bit on all 1111 probabilities of testdata/jvm_reference.json.
//
// Because 2p-1 is formed first, relative accuracy in the lower tail is about 1e-16/p (1e-9 for p = 1e-7)
// and p below ~1e-17 gives -Inf, as in commons-math. p outside [0, 1] or NaN gives NaN (commons-math
// throws); p = 0 and p = 1 give -Inf and +Inf.
func NormalQuantile(p float64) float64 {
	if math.IsNaN(p) || p < 0 || p > 1 {
		return math.NaN()
	}
	// commons-math: mean + standardDeviation * SQRT2 * erfInv(2p - 1), with mean 0 and deviation 1.
	return 0 + math.Sqrt2*erfInv(2*p-1)
}

// erfInv is the inverse error function of commons-math 3.6.1 (Giles, "Approximating the erfinv
// function", GPU Computing Gems vol. 2, 2010), evaluated in the same order so that the results agree
// bit for bit with Java. Explicit float64 conversions keep the compiler
// from fusing multiply-adds, which Java never does.
func erfInv(x float64) float64 {
	// (1-x)(1+x), not 1-x*x: the latter loses accuracy near +-1.
	w := -logCR(float64((1.0 - x) * (1.0 + x)))
	var p float64
	switch {
	case w < 6.25:
		w -= 3.125
		p = horner(w, erfInvCentral[:])
	case w < 16.0:
		w = math.Sqrt(w) - 3.25
		p = horner(w, erfInvTail[:])
	case !math.IsInf(w, 0):
		w = math.Sqrt(w) - 5.0
		p = horner(w, erfInvFarTail[:])
	default:
		// x = +-1: the polynomial would turn +Inf into -Inf; commons-math special-cases it.
		p = math.Inf(1)
	}
	return float64(p * x)
}

// horner evaluates c[0]*w^(k-1) + ... + c[k-1] as p = c[i] + p*w, rounding every product.
func horner(w float64, c []float64) float64 {
	p := c[0]
	for _, ci := range c[1:] {
		p = ci + float64(p*w)
	}
	return p
}

// Coefficients of Giles' double-precision erfinv approximation, highest degree first.
var (
	erfInvCentral = [...]float64{
		-3.6444120640178196996e-21, -1.685059138182016589e-19, 1.2858480715256400167e-18,
		1.115787767802518096e-17, -1.333171662854620906e-16, 2.0972767875968561637e-17,
		6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14,
		2.6335093153082322977e-12, -1.2975133253453532498e-11, -5.4154120542946279317e-11,
		1.051212273321532285e-09, -4.1126339803469836976e-09, -2.9070369957882005086e-08,
		4.2347877827932403518e-07, -1.3654692000834678645e-06, -1.3882523362786468719e-05,
		0.0001867342080340571352, -0.00074070253416626697512, -0.0060336708714301490533,
		0.24015818242558961693, 1.6536545626831027356,
	}
	erfInvTail = [...]float64{
		2.2137376921775787049e-09, 9.0756561938885390979e-08, -2.7517406297064545428e-07,
		1.8239629214389227755e-08, 1.5027403968909827627e-06, -4.013867526981545969e-06,
		2.9234449089955446044e-06, 1.2475304481671778723e-05, -4.7318229009055733981e-05,
		6.8284851459573175448e-05, 2.4031110387097893999e-05, -0.0003550375203628474796,
		0.00095328937973738049703, -0.0016882755560235047313, 0.0024914420961078508066,
		-0.0037512085075692412107, 0.005370914553590063617, 1.0052589676941592334,
		3.0838856104922207635,
	}
	erfInvFarTail = [...]float64{
		-2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-09,
		-3.7894654401267369937e-09, 7.6157012080783393804e-09, -1.4960026627149240478e-08,
		2.9147953450901080826e-08, -6.7711997758452339498e-08, 2.2900482228026654717e-07,
		-9.9298272942317002539e-07, 4.5260625972231537039e-06, -1.9681778105531670567e-05,
		7.5995277030017761139e-05, -0.00021503011930044477347, -0.00013871931833623122026,
		1.0103004648645343977, 4.8499064014085844221,
	}
)
