package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// kongInstance answers with its name after 2 ms; with fail, every second answer is a 500.
func kongInstance(t *testing.T, name string, fail bool) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(2 * time.Millisecond) // the instance's service time
		if fail && n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// kongLoad sends 150 requests/s (at most 9000) through Kong's proxy until stop is called; it counts
// the answers by body.
type kongLoad struct {
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	hits map[string]int
}

func startKongLoad(k *kongtest.Server) *kongLoad {
	ctx, stop := context.WithCancel(context.Background())
	l := &kongLoad{stop: stop, hits: map[string]int{}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / 150)
		defer tick.Stop()
		for i := 0; i < 9000; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				resp, err := client.Get(k.ProxyURL() + "/")
				if err != nil {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				l.mu.Lock()
				l.hits[string(b)]++
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

func (l *kongLoad) end() map[string]int {
	l.stop()
	l.wg.Wait()
	return l.hits
}

// after sends 20 requests through Kong and counts the answers by body.
func after(t *testing.T, k *kongtest.Server) map[string]int {
	t.Helper()
	hits := map[string]int{}
	for i := 0; i < 20; i++ {
		resp, err := client.Get(k.ProxyURL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		hits[string(b)]++
	}
	return hits
}

func kongEntities(t *testing.T, k *kongtest.Server, entities ...[2]any) {
	t.Helper()
	for _, e := range entities {
		if _, err := k.Create("", e[0].(string), e[1].(map[string]any)); err != nil {
			t.Fatal(err)
		}
	}
}

// reportOf parses `run -o json`.
// runUnderKongLoad runs `canaryctl run --spec spec -o json` while clients send requests through k,
// checks the exit code and returns the run, the answers per cohort during it and the JSON report.
func runUnderKongLoad(t *testing.T, k *kongtest.Server, spec, dir string, code int) (result, map[string]int, map[string]any) {
	t.Helper()
	load := startKongLoad(k)
	r := run(t, 150*time.Second, nil, "run", "--spec", spec, "--state-dir", filepath.Join(dir, "state"), "-o", "json")
	during := load.end()
	t.Logf("answers during the run %v; stderr:\n%s", during, r.stderr)
	if r.code != code {
		t.Fatalf("exit %d, want %d", r.code, code)
	}
	return r, during, reportOf(t, r)
}

func reportOf(t *testing.T, r result) map[string]any {
	t.Helper()
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return rep
}

const kongModeMetrics = `  resolution: 1s
  thresholds: {pass: 95, marginal: 75}
  metrics:
    - {name: p99-latency, kind: latency, quantile: 0.99, direction: increase, mustHaveData: true, group: latency, effectSize: {allowedIncrease: 2}}
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: remove, group: errors}
`

// TestRunKongCanaryPlugin: `canaryctl run` with gateway.kong.mode canary-plugin (Kong Enterprise's
// canary plugin, modelled by kongtest) and kong-log metrics. The spec deploys no baseline: the
// control defaults to stable, which the report says. The canary gets its step's share through the
// plugin's percentage; a good canary is promoted as Kong documents it (the Service points at the
// canary, the plugin is deleted); a 5xx canary is rolled back (plugin deleted, the Service still on
// stable).
func TestRunKongCanaryPlugin(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const kayenta = "  mode: kayenta # one Mann-Whitney judgement over 8 points\n"
	for _, tc := range []struct {
		name, mode string
		fail       bool
		code       int
	}{
		{"good canary promoted", kayenta, false, 0},
		{"5xx canary rolled back", kayenta, true, 3},
		// kong-log's default mode: request-level looks; a 50% 5xx canary fails within seconds
		{"sequential: 5xx canary rolled back", "  mode: sequential\n  sequential: {minBake: 2s, maxBake: 100s, thresholdSamples: 20}\n", true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := kongtest.New(kongtest.WithEnterprise()) // the canary plugin is Kong Enterprise's
			t.Cleanup(k.Close)
			stable, can := kongInstance(t, "stable", false), kongInstance(t, "canary", tc.fail)
			sHost, sPort, _ := net.SplitHostPort(hostPort(stable))
			port, _ := strconv.Atoi(sPort)
			// The Service sends traffic to the stable instance's host directly: the plugin's use case.
			kongEntities(t, k,
				[2]any{"services", map[string]any{"name": "web", "host": sHost, "port": port}},
				[2]any{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "web"}}})
			dir := t.TempDir()
			spec := filepath.Join(dir, "web.yaml")
			if err := os.WriteFile(spec, fmt.Appendf(nil, `version: 1
service: web
stable: {addresses: [%q]}
deploy:
  canary: {type: static, addresses: [%q]}
gateway:
  type: kong
  kong: {admin: %s, service: web, mode: canary-plugin, propagation: 50ms, timeout: 2s, log: {flush: 100ms}}
metrics: {type: kong-log}
analysis:
%s%ssteps:
  - {weight: 20, warmup: 1s, interval: 8s, duration: 9s}
  - {weight: 100, warmup: 0s, interval: 6s, duration: 6s}
onMarginal: rollback
`, stable.URL, can.URL, k.AdminURL(), tc.mode, kongModeMetrics), 0o644); err != nil {
				t.Fatal(err)
			}
			r, during, rep := runUnderKongLoad(t, k, spec, dir, tc.code)
			if rep["control"] != "stable" || !strings.Contains(fmt.Sprint(rep["controlNote"]), "canary-plugin has no baseline cohort") {
				t.Errorf("report control %v (%v), want stable by default for canary-plugin", rep["control"], rep["controlNote"])
			}
			if !strings.Contains(r.stderr, "analysis.control defaults to stable") || !strings.Contains(r.stderr, "s stable ") {
				t.Errorf("stderr does not say the control is stable")
			}
			if during["canary"] == 0 || during["stable"] == 0 {
				t.Errorf("answers %v: want both cohorts served during the steps", during)
			}
			var patched, deleted bool
			for _, q := range k.Requests() {
				patched = patched || q.Method == http.MethodPatch && strings.HasPrefix(q.Path, "/plugins/")
				deleted = deleted || q.Method == http.MethodDelete && strings.HasPrefix(q.Path, "/plugins/")
			}
			if tc.code == 0 && !patched || !deleted {
				t.Errorf("admin calls: plugin percentage patched %v (at the second step), plugin deleted %v", patched, deleted)
			}
			if ps := k.Plugins(); len(ps) != 0 {
				t.Errorf("plugins left after the run: %v", ps)
			}
			svc := k.Entity("services", "web")
			cHost, cPort, _ := net.SplitHostPort(hostPort(can))
			hits := after(t, k)
			if tc.code == 0 {
				if svc["host"] != cHost || fmt.Sprint(svc["port"]) != cPort || hits["canary"] != 20 {
					t.Fatalf("after promotion: service %v:%v, answers %v; want the service on the canary %s", svc["host"], svc["port"], hits, hostPort(can))
				}
				return
			}
			if svc["host"] != sHost || fmt.Sprint(svc["port"]) != sPort || hits["stable"] != 20 {
				t.Fatalf("after rollback: service %v:%v, answers %v; want all traffic on stable %s", svc["host"], svc["port"], hits, hostPort(stable))
			}
			if !strings.Contains(r.stderr, "5xx") || !strings.Contains(r.stderr, " vs stable ") || strings.Contains(r.stderr, "vs baseline") {
				t.Errorf("stderr does not name the failing metric and stable as what it was compared with")
			}
		})
	}
}

// TestRunKongBlueGreen: `canaryctl run` with gateway.kong.mode bluegreen: one step of 100%, judged
// before/after (stable observed for one interval, then the Service's host switched to the green
// upstream, the canary's interval compared with stable's). A good green is promoted (the Service
// stays on green); a 5xx green is switched back to blue (and the green upstream canaryctl created is
// deleted). Stable and canary never serve at the same time.
func TestRunKongBlueGreen(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail bool
		code int
	}{
		{"good green promoted", false, 0},
		{"5xx green switched back to blue", true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := kongtest.New()
			t.Cleanup(k.Close)
			stable, can := kongInstance(t, "stable", false), kongInstance(t, "canary", tc.fail)
			kongEntities(t, k,
				[2]any{"upstreams", map[string]any{"name": "web-blue"}},
				[2]any{"services", map[string]any{"name": "web", "host": "web-blue"}},
				[2]any{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "web"}}},
				[2]any{"targets", map[string]any{"upstream": "web-blue", "target": hostPort(stable)}})
			dir := t.TempDir()
			spec := filepath.Join(dir, "web.yaml")
			if err := os.WriteFile(spec, fmt.Appendf(nil, `version: 1
service: web
stable: {addresses: [%q]}
deploy:
  canary: {type: static, addresses: [%q]}
gateway:
  type: kong
  kong: {admin: %s, service: web, mode: bluegreen, greenUpstream: web-green, propagation: 50ms, timeout: 2s, log: {flush: 100ms}}
metrics: {type: kong-log}
# mode kayenta and control stable are this mode's defaults. Only the 5xx rate is judged: latency
# before and after the switch drifts on a shared test machine (the weakness of before/after judging).
analysis:
  resolution: 1s
  metrics:
    - {name: 5xx-rate, kind: error_rate, direction: increase, critical: true, nanStrategy: remove, group: errors}
steps:
  - {weight: 100, warmup: 1s, interval: 6s, duration: 7s}
onMarginal: rollback
`, stable.URL, can.URL, k.AdminURL()), 0o644); err != nil {
				t.Fatal(err)
			}
			r, during, rep := runUnderKongLoad(t, k, spec, dir, tc.code)
			cw, _ := rep["controlWindow"].(map[string]any)
			if rep["control"] != "stable" || cw == nil || !strings.Contains(fmt.Sprint(rep["controlNote"]), "before/after") {
				t.Fatalf("report control %v window %v note %v; want stable before/after", rep["control"], rep["controlWindow"], rep["controlNote"])
			}
			steps := rep["steps"].([]any)
			ivs := steps[0].(map[string]any)["intervals"].([]any)
			if len(ivs) == 0 {
				t.Fatal("no interval was judged")
			}
			for _, x := range ivs {
				iv := x.(map[string]any)
				start, _ := time.Parse(time.RFC3339Nano, iv["start"].(string))
				end, _ := time.Parse(time.RFC3339Nano, iv["end"].(string))
				cEnd, _ := time.Parse(time.RFC3339Nano, cw["end"].(string))
				if start.Before(cEnd) || end.Sub(start) != 6*time.Second || fmt.Sprint(iv["controlWindow"]) != fmt.Sprint(cw) {
					t.Errorf("interval %v..%v (control %v): want a 6s window after the control window %v", start, end, iv["controlWindow"], cw)
				}
				if iv["baselineSamples"].(float64) == 0 || iv["canarySamples"].(float64) == 0 {
					t.Errorf("interval samples stable %v canary %v: want both", iv["baselineSamples"], iv["canarySamples"])
				}
			}
			if during["canary"] == 0 || during["stable"] == 0 {
				t.Errorf("answers %v: want stable before the switch and the canary after it", during)
			}
			svc := k.Entity("services", "web")
			hits := after(t, k)
			if tc.code == 0 {
				if svc["host"] != "web-green" || hits["canary"] != 20 {
					t.Fatalf("after promotion: service host %v, answers %v; want green", svc["host"], hits)
				}
				if ts := k.Targets("web-green"); len(ts) != 1 || ts[0].Target != hostPort(can) {
					t.Errorf("green targets %+v", ts)
				}
			} else {
				if svc["host"] != "web-blue" || hits["stable"] != 20 {
					t.Fatalf("after rollback: service host %v, answers %v; want blue", svc["host"], hits)
				}
				if k.Entity("upstreams", "web-green") != nil {
					t.Errorf("the green upstream canaryctl created is still there")
				}
				if !strings.Contains(r.stderr, "5xx-rate High (critical)") {
					t.Errorf("stderr does not name the failing metric")
				}
			}
			if ps := k.Plugins(); len(ps) != 0 {
				t.Errorf("plugins left after the run: %v", ps)
			}
		})
	}
}

// TestRunKongModeSpecErrors: the new one-line errors of canary-plugin and bluegreen exit 2 before
// Kong is called.
func TestRunKongModeSpecErrors(t *testing.T) {
	skipShort(t)
	t.Parallel()
	k := kongtest.New()
	t.Cleanup(k.Close)
	for _, tc := range []struct {
		name, mode, extra, field string
	}{
		{"canary-plugin with a baseline", "canary-plugin", "analysis: {control: baseline}\n", "analysis.control: gateway.kong.mode canary-plugin has no baseline cohort"},
		{"bluegreen in steps", "bluegreen", "steps: [{weight: 10}, {weight: 100}]\n", "steps: gateway.kong.mode bluegreen switches all traffic at once"},
		{"bluegreen sequential", "bluegreen", "analysis: {mode: sequential}\nsteps: [{weight: 100}]\n", "analysis.mode: sequential compares"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spec := filepath.Join(dir, "web.yaml")
			if err := os.WriteFile(spec, fmt.Appendf(nil, `service: web
stable: {addresses: ["http://127.0.0.1:1"]}
deploy:
  canary: {type: static, addresses: ["http://127.0.0.1:2"]}
gateway:
  type: kong
  kong: {admin: %s, service: web, mode: %s, greenUpstream: web-green}
metrics: {type: kong-log}
%s`, k.AdminURL(), tc.mode, tc.extra), 0o644); err != nil {
				t.Fatal(err)
			}
			r := run(t, time.Minute, nil, "run", "--spec", spec, "--state-dir", filepath.Join(dir, "state"))
			if r.code != 2 || !strings.Contains(r.stderr, tc.field) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("exit %d, want 2 with one line %q; stderr:\n%s", r.code, tc.field, r.stderr)
			}
		})
	}
	if n := len(k.Requests()); n != 0 {
		t.Errorf("%d Admin API calls for invalid specs, want none", n)
	}
}
