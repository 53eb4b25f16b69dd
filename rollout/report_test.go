package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func num(f float64) *Number { n := Number(f); return &n }

// goldenState is a rolled-back rollout: step 1 passed, step 2 failed on its second interval.
func goldenState() State {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	pass := []MetricResult{
		{Name: "p99-latency", Group: "latency", Classification: "Pass", Reason: "shift 0.1 (98% CI -0.5..0.7), mean ratio 1",
			BaselineMean: 12.5, CanaryMean: 12.6, BaselineCount: 6, CanaryCount: 6, Ratio: 1.008, CILower: num(-0.5), CIUpper: num(0.7), Estimate: num(0.1)},
		{Name: "5xx-rate", Group: "errors", Classification: "Pass", Reason: "canary and baseline hold the same values",
			BaselineMean: 0, CanaryMean: 0, BaselineCount: 6, CanaryCount: 6, Ratio: Number(math.NaN())},
	}
	fail := []MetricResult{pass[0], {Name: "5xx-rate", Group: "errors", Classification: "High", Critical: true,
		Reason: "shift 10 (98% CI 8..12), mean ratio n/a", BaselineMean: 0, CanaryMean: 10, BaselineCount: 6, CanaryCount: 6,
		Ratio: Number(math.Inf(1)), CILower: num(8), CIUpper: num(12), Estimate: num(10)}}
	s1 := providers.Split{Canary: 250, Baseline: 250}
	s2 := providers.Split{Canary: 1000, Baseline: 1000}
	return State{
		SchemaVersion: StateSchemaVersion, Service: "checkout", RunID: "20261122T040000.000Z", Phase: RolledBack,
		Step: 1, Steps: 3, Weights: []float64{2.5, 10, 100}, Split: providers.Split{}, Score: num(0), Verdict: VerdictFail,
		Reason: "step 2/3 (10%) interval 2: score 0 <= marginal 75: 5xx-rate High (critical): shift 10 (98% CI 8..12), mean ratio n/a",
		Intervals: []Interval{
			{Step: 0, Index: 1, At: at(90), Start: at(30), End: at(90), Split: s1, Baseline: 40, Canary: 38, Score: 100, Verdict: VerdictPass, Metrics: pass},
			{Step: 0, Index: 2, At: at(150), Start: at(30), End: at(150), Split: s1, Error: "fetch p99-latency: connection refused", Score: Number(math.NaN()), Verdict: VerdictError},
			{Step: 0, Index: 3, At: at(180), Start: at(30), End: at(180), Split: s1, Baseline: 101, Canary: 99, Score: 100, Verdict: VerdictPass, Final: true, Metrics: pass},
			{Step: 1, Index: 1, At: at(270), Start: at(210), End: at(270), Split: s2, Baseline: 160, Canary: 158, Score: 100, Verdict: VerdictPass, Metrics: pass},
			{Step: 1, Index: 2, At: at(330), Start: at(210), End: at(330), Split: s2, Baseline: 321, Canary: 317, Score: 0, Verdict: VerdictFail, Metrics: fail},
		},
		StartedAt: t0, UpdatedAt: at(331), FinishedAt: at(331), PID: 4242,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./rollout -run Golden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./rollout -run Golden -update):\n%s", name, got)
	}
}

func TestReportGolden(t *testing.T) {
	r := NewReport(testSpec(), goldenState())
	var j, x bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJUnit(&x); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", j.Bytes())
	golden(t, "report.junit.xml", x.Bytes())
	golden(t, "report.spinnaker.txt", []byte(r.SpinnakerLine()))

	// Invariants besides the bytes.
	var back Report
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatalf("report JSON does not parse: %v", err)
	}
	if got := []string{back.Steps[0].Outcome, back.Steps[1].Outcome, back.Steps[2].Outcome}; strings.Join(got, ",") != "passed,failed,not-reached" {
		t.Errorf("outcomes %v", got)
	}
	if err := xml.Unmarshal(x.Bytes(), new(junitSuites)); err != nil {
		t.Errorf("JUnit does not parse: %v", err)
	}
	line := r.SpinnakerLine()
	if !strings.HasPrefix(line, SpinnakerPrefix) || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("spinnaker line %q", line)
	}
	var sp Spinnaker
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), SpinnakerPrefix)), &sp); err != nil || sp.Promoted || sp.Phase != RolledBack {
		t.Errorf("spinnaker JSON %v %+v", err, sp)
	}
}

func TestSpinnakerLineStaysOneLine(t *testing.T) {
	t.Parallel()
	st := goldenState()
	st.Reason = "line one\nline two\r\n\u2028tab\t"
	line := NewReport(testSpec(), st).SpinnakerLine()
	if strings.Count(line, "\n") != 1 || strings.Contains(line, "\r") {
		t.Fatalf("%q", line)
	}
}

func TestWebhookNotifier(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &m) != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	n := NewWebhookNotifier(WebhookConfig{Webhooks: []WebhookSpec{
		{URL: srv.URL + "/hooks/T000/secret"},
		{URL: srv.URL + "/only-promoted", On: []string{EventPromoted}},
		{URL: failing.URL + "/services/SECRET"},
	}})
	note := Notification{Event: EventRolledBack, Service: "checkout", Phase: RolledBack, Score: num(0), Reason: "5xx-rate High"}
	note.Text = note.text()
	err := n.Notify(context.Background(), note)
	if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v: must report the failing hook without its secret path", err)
	}
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1 (the promoted-only hook must not fire)", len(got))
	}
	if text, _ := got[0]["text"].(string); !strings.Contains(text, "checkout canary rolled back, all traffic on stable (score 0): 5xx-rate High") {
		t.Errorf("text %q", text)
	}
	if got[0]["event"] != "rolledBack" || got[0]["phase"] != "RolledBack" {
		t.Errorf("payload %v", got[0])
	}
	// started is opt-in
	if err := n.Notify(context.Background(), Notification{Event: EventStarted}); err != nil || len(got) != 1 {
		t.Errorf("started delivered by default: %v %d", err, len(got))
	}
}

// TestNotStartedReport: a run that never started still has a report, a JUnit file and a Spinnaker
// line, with every problem of an invalid spec (one per entry) and the service the spec names.
func TestNotStartedReport(t *testing.T) {
	t.Parallel()
	raw := []byte("service: web\nstabel: {}\nsteps: [{weight: ten}]\n")
	_, err := ParseSpec(bytes.NewReader(raw))
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	r := NotStartedReport(ServiceOf(raw), time.Unix(0, 0), err)
	if r.Phase != NotStarted || r.Service != "web" || len(r.Errors) != 2 || !strings.HasPrefix(r.Errors[0], `stabel (line 2): unknown field`) ||
		!strings.Contains(r.Reason, "steps[0].weight (line 3)") || r.Steps == nil {
		t.Fatalf("report %+v", r)
	}
	var junit bytes.Buffer
	if err := r.WriteJUnit(&junit); err != nil || !strings.Contains(junit.String(), `type="NotStarted"`) || !strings.Contains(junit.String(), "stabel (line 2)") {
		t.Errorf("junit (%v):\n%s", err, junit.String())
	}
	if line := r.SpinnakerLine(); !strings.Contains(line, `"phase":"NotStarted"`) || !strings.Contains(line, `"errors":["stabel (line 2)`) || strings.Count(line, "\n") != 1 {
		t.Errorf("spinnaker line %q", line)
	}
	if ServiceOf([]byte("service: Not A Name\n")) != "" || ServiceOf([]byte("[")) != "" {
		t.Error("ServiceOf returned a name that is not one")
	}
}
