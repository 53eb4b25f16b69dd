//go:build race

package sequential

// raceScale shrinks the property tests under the race detector, which slows them tenfold; the
// statistical assertions run at full size in the ordinary test run.
const raceScale = 4
