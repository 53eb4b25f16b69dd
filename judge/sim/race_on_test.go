//go:build race

package sim

// raceScale shrinks the simulation tests under the race detector, which slows them tenfold.
const raceScale = 4
