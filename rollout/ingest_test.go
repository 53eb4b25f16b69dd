package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/fake"
)

// lossyLog is a synthLog whose receiver dropped 25 entries every 250 ms of [dropFrom, dropTo) and
// rejected one post per second throughout (an IngestReporter, as kong-log is); like the receiver it
// counts only what has arrived (before until).
type lossyLog struct {
	*synthLog
	dropFrom, dropTo time.Time
}

func (l *lossyLog) Ingest(_ context.Context, since, until time.Time) (providers.Ingest, error) {
	var in providers.Ingest
	for s := since.Truncate(250 * time.Millisecond); s.Before(until); s = s.Add(250 * time.Millisecond) {
		if s.Truncate(time.Second).Equal(s) {
			in.RejectedPosts++
		}
		if !s.Before(l.dropFrom) && s.Before(l.dropTo) {
			in.DroppedEntries += 25
		}
	}
	return in, nil
}

// TestSequentialLooksWithDroppedEntriesAreLeftOut: a look whose window lost entries is not fed to
// the analyzer and is recorded as need-more-data saying so; once the receiver keeps up again the good
// canary passes. Rejected posts are named in the explanation and change nothing.
func TestSequentialLooksWithDroppedEntriesAreLeftOut(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	gw := fake.NewGateway()
	log := &lossyLog{synthLog: newSynthLog(gw, 1000, 0.005, 1)}
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	// the receiver is overloaded during the first 90 s of the first step
	log.dropFrom, log.dropTo = t0, t0.Add(90*time.Second)
	st := h.runUntil(20000, terminal)
	if st.Phase != Promoted {
		t.Fatalf("phase %s: %s", st.Phase, st.Reason)
	}
	lossy, named := 0, 0
	for _, iv := range st.Intervals {
		if iv.Step != 0 {
			continue
		}
		if iv.Ingest != nil && iv.Ingest.RejectedPosts > int(iv.At.Sub(iv.Start).Seconds())+2 {
			t.Errorf("interval %d counts %d rejected posts in %s: counted twice", iv.Index, iv.Ingest.RejectedPosts, iv.At.Sub(iv.Start))
		}
		if iv.Ingest == nil || iv.Ingest.RejectedPosts == 0 || !strings.Contains(iv.Reason, "posts rejected") {
			t.Errorf("interval %d: ingest %+v, reason %q; want the rejected posts named", iv.Index, iv.Ingest, iv.Reason)
		} else {
			named++
		}
		if strings.Contains(iv.Reason, "were not used") {
			lossy++
			if iv.Final || !strings.Contains(iv.Reason, "dropped by the receiver") {
				t.Errorf("record of looks with dropped entries (final %v): %q", iv.Final, iv.Reason)
			}
		}
		if iv.Verdict == VerdictPass && iv.At.Before(log.dropTo) {
			t.Errorf("step passed at %s, while entries were being dropped", iv.At)
		}
	}
	if lossy == 0 || named == 0 {
		t.Fatalf("%d intervals recorded dropped entries, %d named rejected posts; want both", lossy, named)
	}
	if !strings.Contains(h.progress.String(), "since the last record were not used") {
		t.Errorf("progress lines do not show the dropped entries:\n%s", h.progress.String())
	}
}

// TestSequentialNeverPassesOnIncompleteData: a receiver that drops entries all the time never lets a
// step pass; it pauses at maxBake for a human.
func TestSequentialNeverPassesOnIncompleteData(t *testing.T) {
	t.Parallel()
	spec := seqSpec()
	spec.Analysis.Sequential.MaxBake = 6 * time.Minute
	gw := fake.NewGateway()
	log := &lossyLog{synthLog: newSynthLog(gw, 200, 0.005, 1), dropFrom: t0, dropTo: t0.Add(24 * time.Hour)}
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(20000, func(st State) bool { return st.Phase == Paused })
	if st.Phase != Paused || st.Pause == nil || st.Pause.Kind != PauseNeedMoreData || st.Step != 0 {
		t.Fatalf("phase %s step %d pause %+v: %s; want a need-more-data pause in step 1", st.Phase, st.Step, st.Pause, st.Reason)
	}
	for _, iv := range st.Intervals {
		if iv.Verdict == VerdictPass || iv.Verdict == VerdictFail {
			t.Fatalf("interval judged %s on incomplete data: %q", iv.Verdict, iv.Reason)
		}
	}
}

// TestKayentaIntervalsWithDroppedEntriesAreNotJudged: in mode kayenta an interval whose window lost
// entries is need-more-data, and a step whose final window is incomplete pauses rather than being
// judged on it.
func TestKayentaIntervalsWithDroppedEntriesAreNotJudged(t *testing.T) {
	t.Parallel()
	spec := testSpec()
	gw := fake.NewGateway()
	log := &lossyLog{synthLog: newSynthLog(gw, 10, 0, 1), dropFrom: t0, dropTo: t0.Add(24 * time.Hour)}
	h := newHarness(t, spec, func(c *Config) { c.Requests = log; c.Gateway = gw })
	st := h.runUntil(2000, func(st State) bool { return st.Phase == Paused })
	if st.Phase != Paused || st.Pause == nil || st.Pause.Kind != PauseNeedMoreData || !strings.Contains(st.Reason, "final window is incomplete") {
		t.Fatalf("phase %s pause %+v: %q; want a need-more-data pause naming the incomplete window", st.Phase, st.Pause, st.Reason)
	}
	if len(st.Intervals) == 0 {
		t.Fatal("no intervals")
	}
	for _, iv := range st.Intervals {
		if iv.Verdict != VerdictNeedMoreData || iv.Ingest == nil || iv.Ingest.DroppedEntries == 0 || !strings.Contains(iv.Reason, "not judged: the request log is incomplete") {
			t.Fatalf("interval %+v: want need-more-data naming the dropped entries", iv)
		}
	}
	var js strings.Builder
	if err := NewReport(spec, st).WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"ingest": {`) || !strings.Contains(js.String(), `"droppedEntries": `) || !strings.Contains(js.String(), `"rejectedPosts": `) {
		t.Errorf("the JSON report does not carry the losses:\n%s", js.String())
	}
	// with a receiver that keeps up, the same rollout is judged (and the fake metrics pass it)
	log2 := &lossyLog{synthLog: newSynthLog(gw, 10, 0, 1)}
	h2 := newHarness(t, testSpec(), func(c *Config) { c.Requests = log2; c.Gateway = gw })
	if st := h2.runUntil(2000, terminal); st.Phase != Promoted {
		t.Fatalf("without losses: phase %s: %s", st.Phase, st.Reason)
	}
}
