package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// probe returns the readiness probe with defaults filled in.
func (u *unit) probe() Probe {
	var p Probe
	if u.target.Readiness != nil {
		p = *u.target.Readiness
	}
	if p.Path == "" {
		p.Path = DefaultProbePath
	}
	if p.Status == 0 {
		p.Status = DefaultProbeStatus
	}
	if p.Interval == 0 {
		p.Interval = DefaultProbeInterval
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultProbeTimeout
	}
	return p
}

// waitReady probes every address until all answer the expected status, ctx ends, or exited
// delivers (a process died before it was ready).
func (u *unit) waitReady(ctx context.Context, addrs []string, exited <-chan error) error {
	p := u.probe()
	pending := append([]string(nil), addrs...)
	var last error
	tick := time.NewTicker(p.Interval)
	defer tick.Stop()
	for {
		var still []string
		for _, a := range pending {
			if err := u.probeOnce(ctx, a, p); err != nil {
				if ctx.Err() == nil { // keep the last answer, not the deadline that cut a probe short
					last = err
				}
				still = append(still, a)
			}
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		select {
		case err := <-exited:
			return err
		case <-ctx.Done():
			err := context.Cause(ctx)
			if errors.Is(err, ErrNotReady) && last != nil {
				return fmt.Errorf("%w (last probe: %v)", err, last)
			}
			return err
		case <-tick.C:
		}
	}
}

// probeOnce sends one GET to address+path.
func (u *unit) probeOnce(ctx context.Context, addr string, p Probe) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	url := strings.TrimRight(addr, "/") + p.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := u.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != p.Status {
		return fmt.Errorf("probe %s: status %d, want %d", url, resp.StatusCode, p.Status)
	}
	return nil
}
