package proxy

import (
	"net"
	"testing"
	"time"
)

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.set = append(c.set, t)
	return nil
}

// TestArmLazy: a wait armed lazily ends between d and d+lazySlack(d) after now, whatever deadline
// the connection had: one still in that range is kept (no timer change), one too near or too far
// (a body's 60 s read timeout before a 200 ms wait for a head) is set again, and so is an unknown
// one (zero).
func TestArmLazy(t *testing.T) {
	t.Parallel()
	now := time.Now()
	d := 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		at   time.Time // the deadline set before (zero: unknown)
		kept bool
	}{
		{"unknown", time.Time{}, false},
		{"just set", now.Add(d + lazySlack(d)), true},
		{"at least d away", now.Add(d), true},
		{"too near", now.Add(d - time.Millisecond), false},
		{"past", now.Add(-time.Second), false},
		{"too far: a longer wait's deadline", now.Add(60 * time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &deadlineConn{}
			at := tc.at
			armLazy(c, &at, now, d)
			if kept := len(c.set) == 0; kept != tc.kept {
				t.Fatalf("kept %v, want %v (set %v)", kept, tc.kept, c.set)
			}
			if left := at.Sub(now); left < d || left > d+lazySlack(d) {
				t.Fatalf("deadline %v after now, want between %v and %v", left, d, d+lazySlack(d))
			}
			if !tc.kept && !c.set[0].Equal(at) {
				t.Fatalf("set %v, recorded %v", c.set[0], at)
			}
		})
	}
}
