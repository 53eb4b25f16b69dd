package kong

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/canaryctl/canaryctl/providers"
)

// kong3Entry is an http-log entry as Kong 3.x serializes it (kong/pdk/log.lua, serialize): tries
// is ctx.balancer_data.tries, one object per balancer try with the fields kong/init.lua sets
// (balancer_start(_ns), balancer_latency(_ns), ip, port; state and code on a failed one). tries
// is the array's JSON.
func kong3Entry(end time.Time, status int, tries string) string {
	started := end.Add(-12 * time.Millisecond).UnixMilli()
	return fmt.Sprintf(`{"request":{"id":"6a1b","uri":"/api/items","url":"http://shop.example:8000/api/items","querystring":{},"method":"GET","headers":{"host":"shop.example:8000","user-agent":"curl/8.5.0","accept":"*/*"},"size":93},`+
		`"upstream_uri":"/api/items","upstream_status":"%d","response":{"status":%d,"headers":{"content-type":"application/json","content-length":"2","via":"kong/3.9.0"},"size":312},`+
		`"latencies":{"kong":2,"proxy":10,"request":12,"receive":0},"tries":%s,"authenticated_entity":null,`+
		`"route":{"id":"r1","name":"shop","paths":["/api"],"protocols":["http"]},"service":{"id":"s1","name":"shop","host":"shop.upstream","port":80,"protocol":"http"},`+
		`"client_ip":"127.0.0.1","started_at":%d,"source":"upstream","workspace":"w1","workspace_name":"default"}`,
		status, status, tries, started)
}

// kong3Try is one element of tries; failed adds the state and code Kong sets on a failed try.
func kong3Try(ip string, port int, failed bool) string {
	s := fmt.Sprintf(`{"balancer_start":1733540000000,"balancer_start_ns":1733540000000000000,"balancer_latency":0,"balancer_latency_ns":41000,"ip":%q,"port":%d`, ip, port)
	if failed {
		s += `,"state":"failed","code":502`
	}
	return s + "}"
}

// TestLogRequestsNameTheTarget: each request names the target of its last try as ip:port
// (Request.Instance), for two canary targets — one reached after a failed try on the other, and
// an IPv6 address as Kong spells it — and a target that SetCohort later moves to the baseline
// keeps the cohort and name it had when Kong logged its requests.
func TestLogRequestsNameTheTarget(t *testing.T) {
	t.Parallel()
	if n := unsafe.Sizeof(record{}); n != 24 {
		t.Fatalf("a record is %d bytes; LogConfig.MaxRequests documents 24", n)
	}
	rec := newTestReceiver(t, LogConfig{}) // canary: 10.0.0.1:80 and [::1]:8080
	if err := rec.SetCohort(providers.Canary, []string{"10.0.0.1:80", "10.0.0.3:8000", "[::1]:8080"}); err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + testSecret
	now := time.Now()
	batch := func(entries ...string) {
		t.Helper()
		if got := post(t, http.DefaultClient, rec.URL(), auth, "["+strings.Join(entries, ",")+"]"); got != http.StatusOK {
			t.Fatalf("post: %d", got)
		}
	}
	batch(
		kong3Entry(now.Add(-5*time.Second), 200, "["+kong3Try("10.0.0.1", 80, false)+"]"),
		kong3Entry(now.Add(-4*time.Second), 503, "["+kong3Try("10.0.0.1", 80, true)+","+kong3Try("10.0.0.3", 8000, false)+"]"),
		kong3Entry(now.Add(-3*time.Second), 204, "["+kong3Try("0:0:0:0:0:0:0:1", 8080, false)+"]"),
	)
	// 10.0.0.1:80 moves to the baseline; what it answered as a canary stays the canary's
	if err := rec.SetCohort(providers.Canary, []string{"10.0.0.3:8000"}); err != nil {
		t.Fatal(err)
	}
	if err := rec.SetCohort(providers.Baseline, []string{"10.0.0.1:80"}); err != nil {
		t.Fatal(err)
	}
	batch(
		kong3Entry(now.Add(-2*time.Second), 201, "["+kong3Try("10.0.0.1", 80, false)+"]"),
		kong3Entry(now.Add(-1*time.Second), 500, "["+kong3Try("10.0.0.3", 8000, false)+"]"),
	)
	got, err := rec.Requests(t.Context(), now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		cohort   providers.Cohort
		status   int
		instance string
	}{
		{providers.Canary, 200, "10.0.0.1:80"},
		{providers.Canary, 503, "10.0.0.3:8000"},
		{providers.Canary, 204, "[::1]:8080"},
		{providers.Baseline, 201, "10.0.0.1:80"},
		{providers.Canary, 500, "10.0.0.3:8000"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if g := got[i]; g.Cohort != w.cohort || g.Status != w.status || g.Instance != w.instance {
			t.Errorf("request %d: %s %d from %q, want %s %d from %q", i, g.Cohort, g.Status, g.Instance, w.cohort, w.status, w.instance)
		}
	}
}

// TestLogRequestsNameTheClient: each request names its client (Request.Client, which the
// sequential tests use to notice and judge sticky cohorts): the authenticated consumer's id when
// Kong logs one (kong/pdk/log.lua serializes ctx.authenticated_consumer as consumer), else
// client_ip; the same key in two posts is the same client.
func TestLogRequestsNameTheClient(t *testing.T) {
	t.Parallel()
	rec := newTestReceiver(t, LogConfig{})
	if err := rec.SetCohort(providers.Canary, []string{"10.0.0.1:80"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	try := "[" + kong3Try("10.0.0.1", 80, false) + "]"
	from := func(end time.Time, ip string) string {
		return strings.Replace(kong3Entry(end, 200, try), `"client_ip":"127.0.0.1"`, fmt.Sprintf(`"client_ip":%q`, ip), 1)
	}
	consumer := func(end time.Time, id string) string {
		return strings.Replace(from(end, "192.0.2.9"), `"authenticated_entity":null`,
			fmt.Sprintf(`"authenticated_entity":{"id":"cred-1"},"consumer":{"created_at":1733540000,"id":%q,"username":"alice"}`, id), 1)
	}
	for _, body := range []string{
		"[" + from(now.Add(-5*time.Second), "198.51.100.7") + "," + consumer(now.Add(-4*time.Second), "5d1e-alice") + "]",
		"[" + from(now.Add(-3*time.Second), "198.51.100.7") + "," + from(now.Add(-2*time.Second), "2001:db8::1") + "]",
	} {
		if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != http.StatusOK {
			t.Fatalf("post: %d", got)
		}
	}
	got, err := rec.Requests(t.Context(), now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.7", "5d1e-alice", "198.51.100.7", "2001:db8::1"}
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Client != w {
			t.Errorf("request %d: client %q, want %q", i, got[i].Client, w)
		}
	}
	if got[0].Client != got[2].Client || unsafe.StringData(got[0].Client) != unsafe.StringData(got[2].Client) {
		t.Errorf("one client, two keys: %q and %q are not the same interned string", got[0].Client, got[2].Client)
	}
}

// TestLogClientIsTheHashKey: in hash mode the client key is what Kong hashes on — the header
// (Kong logs request.headers with lower-case names), the cookie inside the Cookie header, or
// client_ip even for an authenticated consumer — so that a client is the unit Kong keeps on one
// cohort; a request without the header or cookie falls back to the consumer, else client_ip.
func TestLogClientIsTheHashKey(t *testing.T) {
	t.Parallel()
	withHeaders := func(end time.Time, headers string) string {
		e := kong3Entry(end, 200, "["+kong3Try("10.0.0.1", 80, false)+"]")
		e = strings.Replace(e, `"accept":"*/*"`, `"accept":"*/*"`+headers, 1)
		return strings.Replace(e, `"authenticated_entity":null`, `"authenticated_entity":{"id":"cred-1"},"consumer":{"id":"alice-id"}`, 1)
	}
	for _, tc := range []struct {
		name    string
		cfg     LogConfig
		headers []string
		want    []string
	}{
		{"header", LogConfig{ClientHeader: "x-user-id"},
			[]string{`,"x-user-id":"u-17"`, `,"x-user-idx":"u-18"`}, []string{"u-17", "alice-id"}},
		{"cookie", LogConfig{ClientCookie: "cohort"},
			[]string{`,"cookie":"a=1; cohort=u-42; b=2"`, `,"cookie":"xcohort=u-43"`}, []string{"u-42", "alice-id"}},
		{"ip", LogConfig{ClientIP: true}, []string{"", ""}, []string{"127.0.0.1", "127.0.0.1"}},
		{"consumer", LogConfig{}, []string{"", ""}, []string{"alice-id", "alice-id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newTestReceiver(t, tc.cfg)
			if err := rec.SetCohort(providers.Canary, []string{"10.0.0.1:80"}); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			body := "[" + withHeaders(now.Add(-2*time.Second), tc.headers[0]) + "," + withHeaders(now.Add(-time.Second), tc.headers[1]) + "]"
			if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != http.StatusOK {
				t.Fatalf("post: %d", got)
			}
			got, err := rec.Requests(t.Context(), now.Add(-time.Minute), now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d requests, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if got[i].Client != w {
					t.Errorf("request %d: client %q, want %q", i, got[i].Client, w)
				}
			}
		})
	}
}
