//go:build !race

package sequential

const raceScale = 1
