package proxy

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// DefaultSampleCapacity is the default number of per-request samples kept: 262,144 slots of 40
// bytes, 10 MiB whatever the request rate. At 20,000 req/s that is the last 13 s of traffic, so the
// rollout engine should read Requests at least that often (it reads per interval and can page).
const DefaultSampleCapacity = 1 << 18

// slot is one sample, written and read with atomics only (a sequence lock), so the ring needs no
// mutex and stays race-clean. seq is 0 before the slot's first sample, slotWriting while a writer fills
// it, then index+1; a writer claims a slot with a compare-and-swap so that it has one writer at a time.
// slotWriting marks a slot that a writer is filling; it never equals a sample's index+1.
const slotWriting = ^uint64(0)

type slot struct {
	seq    atomic.Uint64
	at     atomic.Int64 // UnixNano when the response finished
	lat    atomic.Int64 // nanoseconds
	meta   atomic.Uint64
	client atomic.Uint32 // p.clients id, 0 unknown
}

// ring is a fixed-size lock-free ring buffer of request samples; the newest overwrite the oldest.
type ring struct {
	head  atomic.Uint64
	mask  uint64
	slots []slot
	// route holds each slot's route id (routes.go), written and read with the slot's sequence;
	// nil when the proxy records no routes
	route []atomic.Uint32
}

func newRing(capacity int) *ring {
	n := 1
	for n < capacity {
		n <<= 1
	}
	return &ring{mask: uint64(n - 1), slots: make([]slot, n)}
}

// metaClient marks a sample of a request the client broke (bad framing, an aborted or timed-out
// upload, an answer it did not take): kept in the ring, left out of collect.
const metaClient = 1 << 25

// metaInstShift places the upstream's instance id (upstream.id: 0 unknown, else 1 + its index in
// the proxy's append-only instance table) in the meta word's upper 32 bits.
const metaInstShift = 32

func packMeta(status, cohort int, byRule, client bool, inst uint32) uint64 {
	m := uint64(status&0xffff) | uint64(cohort&0xff)<<16 | uint64(inst)<<metaInstShift
	if byRule {
		m |= 1 << 24
	}
	if client {
		m |= metaClient
	}
	return m
}

func (r *ring) add(at int64, lat time.Duration, status, cohort int, byRule, client bool, inst, who, route uint32) {
	idx := r.head.Add(1) - 1
	s := r.claim(idx)
	if s == nil {
		return
	}
	if r.route != nil {
		r.route[idx&r.mask].Store(route)
	}
	s.at.Store(at)
	s.lat.Store(int64(lat))
	s.meta.Store(packMeta(status, cohort, byRule, client, inst))
	s.client.Store(who)
	s.seq.Store(idx + 1) // publish
}

// claim reserves the slot of sample idx for one writer, or returns nil. Only one writer may fill a
// slot at a time, or two writers that wrapped onto the same slot (a slow one a whole ring behind)
// could interleave their fields and a reader would see a torn sample. A slot that is being written,
// or already holds a newer sample, is left alone and the sample is dropped: the ring keeps the newest
// samples and is lossy by design.
func (r *ring) claim(idx uint64) *slot {
	s := &r.slots[idx&r.mask]
	for {
		old := s.seq.Load()
		if old == slotWriting || old > idx {
			return nil
		}
		if s.seq.CompareAndSwap(old, slotWriting) {
			return s
		}
	}
}

// collect returns the samples that finished in [since, until), oldest first. Slots being
// rewritten while read are skipped, and so are client errors (metaClient): they say nothing about
// the cohort the request was routed to, so the analysis never sees them. names is the proxy's
// instance table (names[id-1] is the upstream of instance id); an id beyond it reads as unknown.
func (r *ring) collect(since, until time.Time, names, clients, routes []string) []providers.Request {
	head := r.head.Load()
	n := uint64(len(r.slots))
	first := uint64(0)
	if head > n {
		first = head - n
	}
	lo, hi := since.UnixNano(), until.UnixNano()
	var out []providers.Request
	for idx := first; idx < head; idx++ {
		s := &r.slots[idx&r.mask]
		seq := s.seq.Load()
		if seq != idx+1 {
			continue
		}
		at, lat, meta, who := s.at.Load(), s.lat.Load(), s.meta.Load(), s.client.Load()
		var rid uint32
		if r.route != nil {
			rid = r.route[idx&r.mask].Load()
		}
		if s.seq.Load() != seq {
			continue
		}
		if at < lo || at >= hi || meta&metaClient != 0 {
			continue
		}
		ci := int(meta >> 16 & 0xff)
		if ci >= nCohorts {
			continue
		}
		var inst string
		if id := meta >> metaInstShift; id != 0 && id <= uint64(len(names)) {
			inst = names[id-1]
		}
		out = append(out, providers.Request{
			Time:     time.Unix(0, at),
			Cohort:   cohortNames[ci],
			Status:   int(meta & 0xffff),
			Latency:  time.Duration(lat),
			ByRule:   meta&(1<<24) != 0,
			Instance: inst,
		})
		if rid != 0 && int(rid) <= len(routes) {
			out[len(out)-1].Route = routes[rid-1]
		}
		if who != 0 && int(who) <= len(clients) {
			out[len(out)-1].Client = clients[who-1]
		}
	}
	slices.SortStableFunc(out, func(a, b providers.Request) int { return a.Time.Compare(b.Time) })
	return out
}
