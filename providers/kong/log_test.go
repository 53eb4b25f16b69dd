package kong

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// testSecret is a valid secret for receivers under test.
const testSecret = "test-secret-0123456789abcdef"

// newTestReceiver starts a receiver with testSecret that maps 10.0.0.1:80 to the canary and
// 10.0.0.2:80 to stable.
func newTestReceiver(t *testing.T, cfg LogConfig) *LogReceiver {
	t.Helper()
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	rec, err := NewLogReceiver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	if err := rec.SetCohort(providers.Canary, []string{"10.0.0.1:80", "[::1]:8080"}); err != nil {
		t.Fatal(err)
	}
	if err := rec.SetCohort(providers.Stable, []string{"10.0.0.2:80"}); err != nil {
		t.Fatal(err)
	}
	return rec
}

// entryJSON is a minimal http-log entry (the fields the receiver reads) for a request that
// finished at end.
func entryJSON(end time.Time, ip string, port, status int) string {
	started := end.Add(-10 * time.Millisecond).UnixMilli()
	return fmt.Sprintf(`{"request":{"headers":{"x-a":"}\"]"}},"started_at":%d,"latencies":{"request":10,"kong":2,"proxy":8},"response":{"status":%d,"headers":{"via":"kong"}},"tries":[{"ip":"192.0.2.9","port":1,"state":"failed"},{"ip":%q,"port":%d}]}`,
		started, status, ip, port)
}

func post(t *testing.T, client *http.Client, url, auth, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestLogDecode(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ms := now.UnixMilli()
	tests := []struct {
		name    string
		body    string
		err     bool
		recs    int
		n       entryCounts
		status  int
		latency time.Duration
	}{
		{name: "single entry", body: entryJSON(now, "10.0.0.1", 80, 200), recs: 1, n: entryCounts{received: 1}, status: 200, latency: 8 * time.Millisecond},
		{name: "batch", body: "[" + entryJSON(now, "10.0.0.1", 80, 500) + "," + entryJSON(now, "10.0.0.2", 80, 200) + "]", recs: 2, n: entryCounts{received: 2}, status: 500, latency: 8 * time.Millisecond},
		{name: "empty batch", body: `[]`},
		{name: "empty", body: ``, err: true},
		{name: "not json", body: `hello`, err: true},
		{name: "a number", body: `42`, err: true},
		{name: "IPv6 target", body: entryJSON(now, "::1", 8080, 204), recs: 1, n: entryCounts{received: 1}, status: 204, latency: 8 * time.Millisecond},
		{name: "IPv6 target spelled long", body: entryJSON(now, "0:0:0:0:0:0:0:1", 8080, 204), recs: 1, n: entryCounts{received: 1}, status: 204, latency: 8 * time.Millisecond},
		{name: "unknown target", body: entryJSON(now, "10.9.9.9", 80, 200), n: entryCounts{received: 1, unattributed: 1}},
		{name: "no tries (Kong answered itself)", body: fmt.Sprintf(`{"started_at":%d,"latencies":{"request":1,"proxy":-1},"response":{"status":404}}`, ms), n: entryCounts{received: 1, unattributed: 1}},
		{name: "no upstream answer is 502, latency from request", body: fmt.Sprintf(`{"started_at":%d,"latencies":{"request":30,"proxy":-1},"response":{"status":0},"tries":[{"ip":"10.0.0.1","port":80}]}`, ms), recs: 1, n: entryCounts{received: 1}, status: 502, latency: 30 * time.Millisecond},
		{name: "fractional latencies", body: fmt.Sprintf(`{"started_at":%d,"latencies":{"request":2.5,"proxy":1.25},"response":{"status":200},"tries":[{"ip":"10.0.0.1","port":80}]}`, ms), recs: 1, n: entryCounts{received: 1}, status: 200, latency: 1250 * time.Microsecond},
		{name: "no start time", body: `{"latencies":{"request":1},"response":{"status":200},"tries":[{"ip":"10.0.0.1","port":80}]}`, n: entryCounts{received: 1, invalid: 1}},
		{name: "status not a number", body: fmt.Sprintf(`{"started_at":%d,"response":{"status":"ok"},"tries":[{"ip":"10.0.0.1","port":80}]}`, ms), recs: 1, n: entryCounts{received: 1}, status: 502},
		{name: "entry not an object", body: `[1,"x",null]`, n: entryCounts{received: 3, invalid: 3}},
		{name: "truncated", body: "[" + entryJSON(now, "10.0.0.1", 80, 200) + "," + entryJSON(now, "10.0.0.1", 80, 200)[:40], err: true},
		{name: "trailing garbage", body: "[]x", err: true},
		{name: "nested beyond any entry", body: `[{"request":` + strings.Repeat("[", 100000) + `]}]`, err: true},
		{name: "escaped quotes in a header", body: fmt.Sprintf(`{"request":{"headers":{"a":"x\\\"}{["}},"started_at":%d,"latencies":{"request":1,"proxy":1},"response":{"status":201},"tries":[{"ip":"10.0.0.1","port":80}]}`, ms), recs: 1, n: entryCounts{received: 1}, status: 201, latency: time.Millisecond},
		{name: "stale (from before the receiver)", body: entryJSON(now.Add(-2*time.Hour), "10.0.0.1", 80, 500), n: entryCounts{received: 1, stale: 1}},
	}
	rec := newTestReceiver(t, LogConfig{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wk := &logWorker{}
			err := rec.decode([]byte(tc.body), wk, rec.started.Add(-staleGrace).UnixMicro())
			if (err != nil) != tc.err {
				t.Fatalf("decode error %v, want error %v", err, tc.err)
			}
			if len(wk.recs) != tc.recs || wk.n != tc.n {
				t.Fatalf("decoded %d records, counts %+v; want %d, %+v", len(wk.recs), wk.n, tc.recs, tc.n)
			}
			if tc.recs > 0 {
				got := wk.recs[0]
				if int(got.status) != tc.status || time.Duration(got.lat)*time.Microsecond != tc.latency {
					t.Fatalf("record %+v, want status %d latency %s", got, tc.status, tc.latency)
				}
			}
		})
	}
}

// TestLogDecodeAllocatesNothing: decoding a batch of realistic Kong 3.x entries into a reused worker
// allocates nothing per entry (nor per batch).
func TestLogDecodeAllocatesNothing(t *testing.T) {
	rec := newTestReceiver(t, LogConfig{})
	byCohort := map[providers.Cohort][]string{}
	for _, bt := range benchTargets {
		byCohort[bt.cohort] = append(byCohort[bt.cohort], bt.addr)
	}
	for c, addrs := range byCohort {
		if err := rec.SetCohort(c, addrs); err != nil {
			t.Fatal(err)
		}
	}
	body := benchBatch(mrand.New(mrand.NewPCG(3, 4)), time.Now(), 100)
	wk := &logWorker{}
	allocs := testing.AllocsPerRun(20, func() {
		wk.recs, wk.n = wk.recs[:0], entryCounts{}
		if err := rec.decode(body, wk, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || wk.n.received != 100 || wk.n.unattributed+wk.n.invalid != 0 {
		t.Fatalf("%v allocations per batch, counts %+v; want 0 and 100 entries attributed", allocs, wk.n)
	}
}

// FuzzLogDecode: any body decodes without panicking, every entry is counted once, and for a valid
// JSON array the records agree with encoding/json's reading of the same entries.
func FuzzLogDecode(f *testing.F) {
	now := time.Now()
	f.Add([]byte(entryJSON(now, "10.0.0.1", 80, 200)))
	f.Add([]byte("[" + entryJSON(now, "10.0.0.2", 80, 503) + "," + entryJSON(now, "::1", 8080, 200) + "]"))
	f.Add([]byte(`[{"started_at":1e12,"response":{"status":200},"tries":[{"ip":"10.0.0.1","port":80}]},{}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(` {"tries":[]} `))
	f.Add([]byte(`[{"started_at":"1","tries":{"ip":"10.0.0.1"}}`))
	rec, err := NewLogReceiver(LogConfig{Secret: testSecret})
	if err != nil {
		f.Fatal(err)
	}
	defer rec.Close()
	if err := rec.SetCohort(providers.Canary, []string{"10.0.0.1:80", "[::1]:8080"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		wk := &logWorker{}
		if err := rec.decode(b, wk, 0); err != nil {
			if len(wk.recs) != 0 || wk.n != (entryCounts{}) {
				t.Fatalf("a malformed body left %d records, counts %+v", len(wk.recs), wk.n)
			}
			if t0 := bytes.TrimLeft(b, " \t\r\n"); json.Valid(b) && len(t0) > 0 && (t0[0] == '[' || t0[0] == '{') {
				t.Fatalf("valid JSON rejected: %v", err)
			}
			return
		}
		n := wk.n
		if n.received != len(wk.recs)+n.unattributed+n.invalid+n.stale {
			t.Fatalf("counts %+v do not add up to %d records", n, len(wk.recs))
		}
		var ref []struct {
			StartedAt *float64 `json:"started_at"`
			Response  struct {
				Status any `json:"status"`
			} `json:"response"`
			Tries []struct {
				IP   string `json:"ip"`
				Port int    `json:"port"`
			} `json:"tries"`
		}
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) && json.Unmarshal(b, &ref) == nil && n.received != len(ref) {
			t.Fatalf("decoded %d entries, encoding/json reads %d", n.received, len(ref))
		}
	})
}

// TestLogReceiverAuth: only posts with the rollout's secret are read; the others are answered 401,
// counted, reported for their window and change nothing in the requests.
func TestLogReceiverAuth(t *testing.T) {
	t.Parallel()
	rec := newTestReceiver(t, LogConfig{})
	now := time.Now()
	forged := "[" + entryJSON(now, "10.0.0.1", 80, 500) + "," + entryJSON(now, "10.0.0.1", 80, 500) + "]"
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no header", "", 401},
		{"wrong secret", "Bearer wrong-secret-0123456789abcdef", 401},
		{"secret without Bearer", testSecret, 401},
		{"Bearer only", "Bearer", 401},
		{"basic auth", "Basic dXNlcjpwYXNz", 401},
		{"secret with a suffix", "Bearer " + testSecret + "x", 401},
		{"lower-case scheme", "bearer " + testSecret, 401},
	} {
		if got := post(t, http.DefaultClient, rec.URL(), tc.auth, forged); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, entryJSON(now, "10.0.0.1", 80, 200)); got != 200 {
		t.Fatalf("the rollout's post: status %d, want 200", got)
	}
	reqs, err := rec.Requests(t.Context(), now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].Status != 200 || reqs[0].Cohort != providers.Canary {
		t.Fatalf("requests %+v, want only the authentic 200", reqs)
	}
	c := rec.Counters()
	if c.RejectedPosts != 7 || c.Received != 1 {
		t.Fatalf("counters %+v, want 7 rejected posts and 1 entry received", c)
	}
	in, err := rec.Ingest(t.Context(), now.Add(-time.Second), now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if in != (providers.Ingest{RejectedPosts: 7}) {
		t.Fatalf("ingest %+v, want 7 rejected posts", in)
	}
	if in, _ := rec.Ingest(t.Context(), now.Add(-time.Hour), now.Add(-time.Minute)); !in.Zero() {
		t.Fatalf("ingest of an earlier window %+v, want nothing", in)
	}
}

// TestLogReceiverSheds: a post that finds no free slot within Wait is dropped: 200 (Kong must not
// resend what was counted as lost), its entries counted and reported for the window.
func TestLogReceiverSheds(t *testing.T) {
	t.Parallel()
	rec := newTestReceiver(t, LogConfig{MaxInflight: 1, Wait: time.Millisecond})
	held := <-rec.slots // the only slot is busy
	now := time.Now()
	body := "[" + strings.Repeat(entryJSON(now, "10.0.0.1", 80, 200)+",", 4) + entryJSON(now, "10.0.0.2", 80, 200) + "]"
	if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != 200 {
		t.Fatalf("shed post: status %d, want 200", got)
	}
	rec.slots <- held
	if c := rec.Counters(); c.DroppedEntries != 5 || c.Received != 0 {
		t.Fatalf("counters %+v, want 5 dropped, none received", c)
	}
	in, _ := rec.Ingest(t.Context(), now.Add(-time.Second), now)
	if in.DroppedEntries != 5 {
		t.Fatalf("ingest %+v, want 5 dropped", in)
	}
	// with the slot free again, posts are read
	if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != 200 || rec.Counters().Received != 5 {
		t.Fatalf("status %d, counters %+v", got, rec.Counters())
	}
}

// TestLogReceiverEvicts: when the buffer of requests is full the oldest go, and count as dropped
// for the window they finished in.
func TestLogReceiverEvicts(t *testing.T) {
	t.Parallel()
	rec := newTestReceiver(t, LogConfig{MaxRequests: 2})
	old := time.Now().Add(-30 * time.Second)
	now := time.Now()
	body := "[" + entryJSON(old, "10.0.0.1", 80, 200) + "," + entryJSON(now, "10.0.0.1", 80, 200) + "," + entryJSON(now, "10.0.0.2", 80, 200) + "]"
	if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != 200 {
		t.Fatalf("status %d", got)
	}
	in, _ := rec.Ingest(t.Context(), old.Add(-time.Second), old.Add(time.Second))
	if in.DroppedEntries != 1 {
		t.Fatalf("ingest of the evicted entry's window %+v, want 1 dropped", in)
	}
	reqs, _ := rec.Requests(t.Context(), old.Add(-time.Minute), now.Add(time.Minute))
	if len(reqs) != 2 {
		t.Fatalf("%d requests kept, want 2", len(reqs))
	}
}

func TestLogReceiverConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   LogConfig
		field string
	}{
		{"short secret", LogConfig{Secret: "short"}, "log.secretFile"},
		{"secret with a space", LogConfig{Secret: "0123456789 abcdef0123"}, "log.secretFile"},
		{"cert without key", LogConfig{CertFile: "cert.pem"}, "log.tls"},
		{"missing cert files", LogConfig{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}, "log.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewLogReceiver(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("error %v, want a ConfigError for %s", err, tc.field)
			}
		})
	}
}

// TestLogReceiverTLS: with a certificate the receiver serves https only.
func TestLogReceiverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	rec := newTestReceiver(t, LogConfig{CertFile: certFile, KeyFile: keyFile})
	if !strings.HasPrefix(rec.URL(), "https://") {
		t.Fatalf("URL %s, want https", rec.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := post(t, client, rec.URL(), "Bearer "+testSecret, entryJSON(time.Now(), "10.0.0.1", 80, 200)); got != 200 {
		t.Fatalf("https post: status %d", got)
	}
	if got := post(t, client, rec.URL(), "", entryJSON(time.Now(), "10.0.0.1", 80, 500)); got != 401 {
		t.Fatalf("https post without the secret: status %d, want 401", got)
	}
	plain := "http://" + strings.TrimPrefix(rec.URL(), "https://")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, plain, strings.NewReader("[]"))
	req.Header.Set("Authorization", "Bearer "+testSecret)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain http accepted by an https receiver")
		}
	}
	if c := rec.Counters(); c.Received != 1 {
		t.Fatalf("counters %+v, want 1 received", c)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to files and returns them with a pool
// trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kong-log"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestCountEntries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want int
	}{
		{`[]`, 0},
		{`{"a":[{},{}]}`, 1},
		{`[{"a":"}{"},{"b":{"c":[{}]}},{"d":"\"{"}]`, 3},
		{` [ {} , {} ] `, 2},
	} {
		if got, err := countEntries(strings.NewReader(tc.body)); err != nil || got != tc.want {
			t.Errorf("countEntries(%s) = %d, %v; want %d", tc.body, got, err, tc.want)
		}
	}
}

// TestLogReceiverWrapsWithStaleEntries: a post that both wraps the buffer and carries stale
// entries counts both (and does not deadlock on its two locks).
func TestLogReceiverWrapsWithStaleEntries(t *testing.T) {
	t.Parallel()
	rec := newTestReceiver(t, LogConfig{MaxRequests: 2})
	now := time.Now()
	body := "[" + entryJSON(now.Add(-2*time.Hour), "10.0.0.1", 80, 200) + "," + strings.Repeat(entryJSON(now, "10.0.0.1", 80, 200)+",", 2) + entryJSON(now, "10.0.0.2", 80, 200) + "]"
	if got := post(t, http.DefaultClient, rec.URL(), "Bearer "+testSecret, body); got != 200 {
		t.Fatalf("status %d", got)
	}
	if c := rec.Counters(); c.StaleEntries != 1 || c.DroppedEntries != 1 || c.Received != 4 {
		t.Fatalf("counters %+v, want 1 stale, 1 evicted, 4 received", c)
	}
}
