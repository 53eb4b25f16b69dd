package proxy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// cohort indexes, in the order of providers.Cohorts.
const (
	iStable   = 0
	iBaseline = 1
	iCanary   = 2
	nCohorts  = 3
)

var cohortNames = [nCohorts]providers.Cohort{providers.Stable, providers.Baseline, providers.Canary}

func cohortIndex(c providers.Cohort) (int, bool) {
	switch c {
	case providers.Stable:
		return iStable, true
	case providers.Baseline:
		return iBaseline, true
	case providers.Canary:
		return iCanary, true
	}
	return 0, false
}

// upstream is one backend base URL with its passive health state. Upstream objects are shared
// between routing tables so that a back-off survives a split change.
type upstream struct {
	raw string
	url *url.URL
	// id names this upstream in the request samples: 1 + its index in the proxy's instance table
	// (Proxy.instances), assigned once when the upstream is first configured and never reused.
	id uint32
	// hostport is the dial address; fast is set when the fast path may serve this upstream
	// (plain http, no base path); pool holds its idle fast-path connections.
	hostport string
	fast     bool
	pool     connPool
	// downUntil is the UnixNano time until which the upstream is skipped after refusing a
	// connection; 0 when healthy.
	downUntil atomic.Int64
	failures  atomic.Int32
}

func (u *upstream) healthy(now int64) bool {
	d := u.downUntil.Load()
	return d == 0 || now >= d
}

// fail records a refused connection and backs off exponentially: base, 2·base, ... up to max.
func (u *upstream) fail(now int64, base, max time.Duration) time.Duration {
	n := u.failures.Add(1)
	d := base
	for i := int32(1); i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	u.downUntil.Store(now + int64(d))
	return d
}

func (u *upstream) ok() {
	if u.failures.Load() != 0 {
		u.failures.Store(0)
	}
	if u.downUntil.Load() != 0 {
		u.downUntil.Store(0)
	}
}

func newUpstream(raw string, u *url.URL) *upstream {
	hp := u.Host
	if u.Port() == "" {
		hp = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	return &upstream{raw: raw, url: u, hostport: hp, fast: u.Scheme == "http" && (u.Path == "" || u.Path == "/") && u.RawPath == ""}
}

// parseUpstream validates a base URL such as "http://127.0.0.1:9002".
func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q: scheme must be http or https (e.g. http://127.0.0.1:9002)", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("upstream %q: missing host:port (e.g. http://127.0.0.1:9002)", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("upstream %q: must be a base URL without user, query or fragment", s)
	}
	return u, nil
}

// table is an immutable routing table; the proxy swaps a new one in atomically on every change,
// so a request sees one consistent table from start to end.
type table struct {
	split     providers.Split
	upstreams [nCohorts][]*upstream
	// wheel holds the cohort index for each of the 10,000 slots of the split, interleaved by a
	// smooth weighted round robin, so any 10,000 consecutive split decisions match the split exactly.
	wheel *[providers.BasisPoints]uint8
	// rr balances requests over a cohort's upstreams; shared between tables.
	rr *[nCohorts]atomic.Uint64
}

// buildWheel interleaves the three cohorts over 10,000 slots with nginx's smooth weighted round
// robin: every slot, each cohort gains its weight and the richest is picked and pays the total.
func buildWheel(s providers.Split) *[providers.BasisPoints]uint8 {
	var w [providers.BasisPoints]uint8
	weights := [nCohorts]int{s.Stable(), s.Baseline, s.Canary}
	var cur [nCohorts]int
	for i := range w {
		best := -1
		for c := range nCohorts {
			if weights[c] == 0 {
				continue
			}
			cur[c] += weights[c]
			if best < 0 || cur[c] > cur[best] {
				best = c
			}
		}
		cur[best] -= providers.BasisPoints
		w[i] = uint8(best)
	}
	return &w
}

// pick returns a healthy upstream of cohort ci by round robin, or nil if every one is backed off.
func (t *table) pick(ci int, now int64) *upstream {
	ups := t.upstreams[ci]
	n := uint64(len(ups))
	if n == 0 {
		return nil
	}
	start := t.rr[ci].Add(1)
	if n == 1 {
		if ups[0].healthy(now) {
			return ups[0]
		}
		return nil
	}
	for i := range n {
		if u := ups[(start+i)%n]; u.healthy(now) {
			return u
		}
	}
	return nil
}

// route picks an upstream for cohort ci. A baseline or canary cohort that is empty or entirely
// backed off sends its request to stable; stable itself is tried even when backed off, since there
// is nowhere else to go. It returns the cohort really used.
func (t *table) route(ci int, now int64) (int, *upstream) {
	if u := t.pick(ci, now); u != nil {
		return ci, u
	}
	if ci != iStable {
		if u := t.pick(iStable, now); u != nil {
			return iStable, u
		}
	}
	ups := t.upstreams[iStable]
	if len(ups) == 0 {
		return iStable, nil
	}
	return iStable, ups[t.rr[iStable].Add(1)%uint64(len(ups))]
}

// next returns another healthy upstream to retry a request whose connection was refused: first
// the same cohort, then stable. nil when there is none.
func (t *table) next(ci int, failed *upstream, now int64) (int, *upstream) {
	for _, c := range []int{ci, iStable} {
		for _, u := range t.upstreams[c] {
			if u != failed && u.healthy(now) {
				return c, u
			}
		}
		if ci == iStable {
			break
		}
	}
	return ci, nil
}

func (t *table) addrs(ci int) []string {
	out := make([]string, len(t.upstreams[ci]))
	for i, u := range t.upstreams[ci] {
		out[i] = u.raw
	}
	return out
}
