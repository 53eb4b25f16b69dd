package sequential

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Pairing by time slot.
//
// A canary request and a baseline request make a fair pair only if they were served under the same
// conditions: the same load, the same state of shared dependencies, the same hour of the day. Pairing
// in arrival order does not ensure it: when the baseline receives 1.25 times the canary's requests
// (uneven balancing, more connections), the surplus piles up and the canary is paired with ever older
// baseline requests, so a shared slowdown reads as a canary regression when it starts and as a
// baseline one when it ends (issue 14: ~17% false rollbacks). Here time is cut into slots; within a
// slot k = min(canary, baseline) requests are drawn uniformly at random, without replacement, from
// each cohort (a seeded generator, never looking at values) and the two draws are paired in time
// order; the rest of the slot is not paired (the guard still counts every request).
//
// Why it is exact: with a per-request split the cohort of each request is drawn independently of the
// request, so given the times of a slot's requests and the number each cohort served, the canary's
// requests are a uniformly random subset of them and the baseline's a uniformly random subset of the
// rest, whatever the two shares. Two uniform k-draws from those are then a uniformly random pair of
// disjoint k-subsets: exchangeable. Under "the canary is the baseline" swapping the cohorts leaves the
// distribution of the slot unchanged, so every pair difference D is symmetric around 0 given the past,
// for any trend of load or latency inside or across slots. The tests' supermartingale argument needs
// nothing more. (It fails when the cohort depends on the request: sticky users, judged by
// client instead, clusters.go; and when an instance of one cohort misbehaves: see the guard's per-instance rule.)
//
// The slot width adapts to the traffic: wide enough that the quieter cohort expects SlotRequests
// requests (a slot with requests of one cohort only pairs nothing), between MinSlot and MaxSlot. It
// is set when the slot opens, from the counts of earlier slots only.

// slotter cuts timed samples into slots and pairs them.
type slotter struct {
	rng                    *rand.Rand
	target                 float64
	minW, maxW             time.Duration
	start, end             time.Time // the open slot; zero before the first sample
	first                  time.Time // first sample seen (for the rates)
	canaryN, baselineN     int64     // requests seen in closed slots
	closedUntil            time.Time // end of the last closed slot
	c, b                   []Sample  // requests of the open slot
	stN, stE               int64     // stable's requests and errors filed in the open slot
	pairsC, pairsB         []Sample  // scratch
	idxC, idxB             []int     // scratch
	legacy                 int64     // slots of untimed batches
	slotsClosed, slotsUsed int64
}

func newSlotter(cfg Config) *slotter {
	return &slotter{rng: rand.New(rand.NewPCG(cfg.Seed, 0x5107)), target: float64(cfg.SlotRequests),
		minW: cfg.MinSlot, maxW: cfg.MaxSlot}
}

// width is the next slot's width: SlotRequests over the quieter cohort's rate so far, clamped.
func (s *slotter) width() time.Duration {
	el := s.closedUntil.Sub(s.first).Seconds()
	n := min(s.canaryN, s.baselineN)
	if el <= 0 {
		return s.minW
	}
	if n == 0 {
		return s.maxW
	}
	w := time.Duration(s.target / (float64(n) / el) * float64(time.Second))
	return min(max(w, s.minW), s.maxW)
}

// slotFunc receives a closed slot: every canary and baseline request in it, stable's counts and the
// slot's end (zero for an untimed batch).
type slotFunc func(c, b []Sample, stableN, stableE int64, end time.Time)

// add files the batch's samples and calls done for every slot closed by until (the time up to which
// every request is known; zero: the last sample's time). Samples without a time make one slot of
// their own per batch, closed at once. Stable's counts, untimed, go to the slot open at the end of
// the batch (a batch is a look, shorter than a slot).
func (s *slotter) add(canary, baseline []Sample, stableN, stableE int64, until time.Time, done slotFunc) {
	var untimedC, untimedB []Sample
	type tagged struct {
		x      Sample
		canary bool
	}
	all := make([]tagged, 0, len(canary)+len(baseline))
	for _, x := range canary {
		if x.At.IsZero() {
			untimedC = append(untimedC, x)
			continue
		}
		all = append(all, tagged{x, true})
	}
	for _, x := range baseline {
		if x.At.IsZero() {
			untimedB = append(untimedB, x)
			continue
		}
		all = append(all, tagged{x, false})
	}
	if len(all) == 0 && s.start.IsZero() {
		// untimed data (or nothing yet): the batch is its slot
		s.legacy++
		s.canaryN += int64(len(untimedC))
		s.baselineN += int64(len(untimedB))
		s.slotsClosed++
		done(untimedC, untimedB, stableN, stableE, time.Time{})
		return
	}
	if len(untimedC)+len(untimedB) > 0 {
		s.legacy++
		s.canaryN += int64(len(untimedC))
		s.baselineN += int64(len(untimedB))
		s.slotsClosed++
		done(untimedC, untimedB, 0, 0, time.Time{})
	}
	slices.SortStableFunc(all, func(a, b tagged) int { return a.x.At.Compare(b.x.At) })
	for _, t := range all {
		if s.start.IsZero() {
			s.first = t.x.At
			s.closedUntil = t.x.At
			s.start, s.end = t.x.At, t.x.At.Add(s.minW)
		}
		if t.x.At.Before(s.start) {
			continue // late for a closed slot: left out (by time, never by value)
		}
		for !t.x.At.Before(s.end) {
			s.next(done)
			s.skipTo(t.x.At)
		}
		if t.canary {
			s.c = append(s.c, t.x)
		} else {
			s.b = append(s.b, t.x)
		}
	}
	if until.IsZero() && len(all) > 0 {
		until = all[len(all)-1].x.At
	}
	s.stN += stableN
	s.stE += stableE
	for !s.start.IsZero() && !until.Before(s.end) {
		s.next(done)
		s.skipTo(until)
	}
}

// skipTo moves an open, empty slot forward by whole widths so that it holds t or ends after it:
// a stretch without requests is closed in one step.
func (s *slotter) skipTo(t time.Time) {
	if len(s.c)+len(s.b) > 0 || !t.After(s.end) {
		return
	}
	w := s.end.Sub(s.start)
	s.start = s.start.Add(t.Sub(s.start) / w * w)
	s.end = s.start.Add(w)
	s.closedUntil = s.start
}

// lastWidth is the width of the open slot.
func (s *slotter) lastWidth() time.Duration { return s.end.Sub(s.start) }

// next closes the open slot and opens the following one.
func (s *slotter) next(done slotFunc) {
	s.canaryN += int64(len(s.c))
	s.baselineN += int64(len(s.b))
	s.closedUntil = s.end
	s.slotsClosed++
	done(s.c, s.b, s.stN, s.stE, s.end)
	s.c, s.b, s.stN, s.stE = s.c[:0], s.b[:0], 0, 0
	s.start = s.end
	s.end = s.start.Add(s.width())
}

// pairs draws k = min(len(c), len(b)) requests of each cohort uniformly at random, each draw in time
// order, to be paired position by position. The slices are reused by the next call.
func (s *slotter) pairs(c, b []Sample) (pc, pb []Sample) {
	k := min(len(c), len(b))
	if k == 0 {
		return nil, nil
	}
	s.slotsUsed++
	s.pairsC = s.draw(s.pairsC[:0], &s.idxC, c, k)
	s.pairsB = s.draw(s.pairsB[:0], &s.idxB, b, k)
	return s.pairsC, s.pairsB
}

// draw appends k of xs chosen uniformly at random (partial Fisher-Yates on indices), in their
// original order (time order for timed samples).
func (s *slotter) draw(dst []Sample, idx *[]int, xs []Sample, k int) []Sample {
	if k == len(xs) {
		return append(dst, xs...)
	}
	ix := (*idx)[:0]
	for i := range xs {
		ix = append(ix, i)
	}
	for i := range k {
		j := i + s.rng.IntN(len(ix)-i)
		ix[i], ix[j] = ix[j], ix[i]
	}
	sel := ix[:k]
	slices.Sort(sel)
	for _, i := range sel {
		dst = append(dst, xs[i])
	}
	*idx = ix
	return dst
}
