package rollout

import (
	"context"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// IngestReporter is implemented by a request log that is pushed to and can lose or refuse entries
// (kong-log): what it dropped, rejected or left out for a window.
type IngestReporter interface {
	Ingest(ctx context.Context, since, until time.Time) (providers.Ingest, error)
}

// ingest asks the request log what it lost or refused in [since, until); nil when it cannot say or
// nothing was.
func (e *Engine) ingest(ctx context.Context, since, until time.Time) *providers.Ingest {
	ir, ok := e.cfg.Requests.(IngestReporter)
	if !ok {
		return nil
	}
	var in providers.Ingest
	if err := e.call(ctx, func(c context.Context) (err error) { in, err = ir.Ingest(c, since, until); return err }); err != nil {
		e.log.Warn("read the request log's losses", "err", err)
		return nil
	}
	if in.Zero() {
		return nil
	}
	return &in
}

// droppedIn reports entries dropped in the interval's window: its data are incomplete.
func droppedIn(iv Interval) bool { return iv.Ingest != nil && iv.Ingest.DroppedEntries > 0 }

// ingestNote is the "; kong-log: ..." appended to an interval's reason, or "".
func ingestNote(in *providers.Ingest) string {
	if in == nil {
		return ""
	}
	return "; request log: " + in.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
