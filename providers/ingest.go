package providers

import (
	"fmt"
	"strings"
)

// Ingest is what a pushed request log (kong-log: Kong posts its entries) lost or refused in a
// window. A window whose entries were dropped is incomplete and must not be judged; rejected posts
// and stale entries were left out (they did not come from this rollout's Kong) and change nothing,
// but are reported so that a misconfigured sender or an attack is seen.
type Ingest struct {
	// DroppedEntries: entries the receiver could not keep (it was overloaded, or its buffer of
	// requests was full); the window's data are incomplete.
	DroppedEntries int `json:"droppedEntries,omitempty"`
	// RejectedPosts: posts answered 401 (no or wrong Authorization header).
	RejectedPosts int `json:"rejectedPosts,omitempty"`
	// StaleEntries: authenticated entries of requests from before the receiver started (a replay, or
	// a Kong node whose clock is far off), left out.
	StaleEntries int `json:"staleEntries,omitempty"`
}

// Zero reports that nothing was lost or refused.
func (in Ingest) Zero() bool { return in == Ingest{} }

// String says what was lost or refused, e.g. "120 entries dropped by the receiver (overloaded);
// 3 posts rejected (no or wrong Authorization header)", or "" when nothing was.
func (in Ingest) String() string {
	var parts []string
	if in.DroppedEntries > 0 {
		parts = append(parts, fmt.Sprintf("%d %s dropped by the receiver (overloaded or full): the window's data are incomplete", in.DroppedEntries, plural(in.DroppedEntries, "entry", "entries")))
	}
	if in.RejectedPosts > 0 {
		parts = append(parts, fmt.Sprintf("%d %s rejected (no or wrong Authorization header) and left out", in.RejectedPosts, plural(in.RejectedPosts, "post", "posts")))
	}
	if in.StaleEntries > 0 {
		parts = append(parts, fmt.Sprintf("%d stale %s (from before the receiver started: replayed, or a Kong clock far off) left out", in.StaleEntries, plural(in.StaleEntries, "entry", "entries")))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
