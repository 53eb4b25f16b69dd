package proxy

import (
	"net"
	"time"
)

// Lazy read deadlines. Setting a deadline costs a clock read and a change to the runtime's timer
// heap under a lock; the h1 loop would set three per request (the client's idle wait, the wait
// for the upstream's answer, and its reset). Like nginx, which keeps a timer that would move by
// less than NGX_TIMER_LAZY_DELAY (300 ms), a deadline that is still far enough away is kept: a wait
// that should end d after now ends between d and d+lazySlack(d) after it.

// lazySlack is how much later than asked a lazily kept deadline may end a wait.
func lazySlack(d time.Duration) time.Duration { return min(d/4, 300*time.Millisecond) }

// armLazy gives nc a read deadline between now+d and now+d+lazySlack(d). *at is the deadline
// armLazy set last on nc, or the zero time when something else may have set nc's read deadline
// since (whoever sets it otherwise must zero *at); it is kept when it falls in that range (one
// set for a longer wait, such as a body's read timeout on a connection whose next wait is for a
// head, is not).
func armLazy(nc net.Conn, at *time.Time, now time.Time, d time.Duration) {
	if left := at.Sub(now); !at.IsZero() && left >= d && left <= d+lazySlack(d) {
		return
	}
	*at = now.Add(d + lazySlack(d))
	_ = nc.SetReadDeadline(*at)
}
