package proxy

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestAdminAPIJSONGolden: the admin API's answers as a curl user sees them, every number's unit in
// its name (README.md, "Outputs"): a split in percent, latencies in ms. The split set with the
// previous version's basis points reads back the same.
func TestAdminAPIJSONGolden(t *testing.T) {
	t.Parallel()
	stable, baseline, canary, ups := three(t)
	p, srv := startProxy(t, Config{Upstreams: ups})
	admin := startAdmin(t, p)
	call := func(method, path, body string) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, admin.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s %s: %d %s", method, path, body, resp.StatusCode, b)
		}
		return b
	}
	var out bytes.Buffer
	show := func(method, path, body string) {
		ans := call(method, path, body)
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, ans, "", "  "); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, ans)
		}
		out.WriteString(strings.TrimSpace(method+" "+path+" "+body) + "\n" + strings.TrimSpace(pretty.String()) + "\n\n")
	}
	show("PUT", "/v1/split", `{"canaryPercent":2.5,"baselinePercent":2.5}`)
	show("GET", "/v1/split", "")
	show("PUT", "/v1/split", `{"canary":1000,"baseline":1000}`) // basis points, as the previous version's client sent them
	show("GET", "/v1/state", "")
	got := out.String()
	for name, u := range map[string]string{"STABLE": stable.url(), "BASELINE": baseline.url(), "CANARY": canary.url()} {
		got = strings.ReplaceAll(got, u, name)
	}
	golden := filepath.Join("testdata", "golden", "admin-api.txt")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./providers/proxy -run AdminAPIJSONGolden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("admin API answers differ from %s (-update rewrites it):\n%s", golden, got)
	}

	// /v1/requests: times and latencies vary, the field names do not; a latency is a number of ms.
	since := time.Now()
	start := time.Now()
	get(t, testClient(), newReq(t, srv.URL+"/"))
	elapsed := time.Since(start)
	if reqs := samples(t, p, since, 1); len(reqs) != 1 {
		t.Fatalf("%d samples, want 1", len(reqs))
	}
	var reqs []map[string]any
	if err := json.Unmarshal(call("GET", "/v1/requests?since="+since.UTC().Format(time.RFC3339Nano), ""), &reqs); err != nil || len(reqs) != 1 {
		t.Fatalf("/v1/requests: %v %v", reqs, err)
	}
	var keys []string
	for k := range reqs[0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"client", "cohort", "instance", "latencyMs", "status", "time"}; !slices.Equal(keys, want) {
		t.Errorf("/v1/requests fields %v, want %v", keys, want)
	}
	if ms, ok := reqs[0]["latencyMs"].(float64); !ok || ms <= 0 || ms > float64(elapsed)/float64(time.Millisecond) {
		t.Errorf("latencyMs %v, want a number of ms in (0, %v]", reqs[0]["latencyMs"], elapsed)
	}
	// and the client reads it back as the proxy recorded it
	cl, err := NewClient(ClientConfig{BaseURL: admin.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := p.Requests(t.Context(), since, time.Now().Add(time.Second))
	viaAPI, err := cl.Requests(t.Context(), since, time.Now().Add(time.Second))
	if err != nil || len(viaAPI) != 1 || viaAPI[0].Latency != direct[0].Latency || viaAPI[0].Cohort != direct[0].Cohort ||
		viaAPI[0].Instance == "" || viaAPI[0].Instance != direct[0].Instance {
		t.Errorf("client read %+v, %v; the proxy recorded %+v", viaAPI, err, direct)
	}
	if s, err := cl.Split(t.Context()); err != nil || s != (providers.Split{Canary: 1000, Baseline: 1000}) {
		t.Errorf("client Split = %v, %v", s, err)
	}
}
