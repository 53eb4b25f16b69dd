package kong

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/providers/kong/kongtest"
)

// benchTargets are the upstream targets of the benchmark's entries: stable, baseline, canary.
var benchTargets = []struct {
	cohort providers.Cohort
	addr   string
}{
	{providers.Stable, "10.0.1.11:8080"}, {providers.Stable, "10.0.1.12:8080"}, {providers.Stable, "10.0.1.13:8080"},
	{providers.Baseline, "10.0.2.21:8080"}, {providers.Canary, "10.0.3.31:8080"},
}

// benchEntry is one realistic Kong 3.x http-log entry (about 1.4 KB): a browser-like request with
// its headers, the response headers Kong adds, the Service and Route Kong copies in, one try.
func benchEntry(rng *rand.Rand, now time.Time) []byte {
	t := benchTargets[rng.IntN(len(benchTargets))]
	host, port, _ := strings.Cut(t.addr, ":")
	pn, _ := strconv.Atoi(port)
	status := http.StatusOK
	if rng.IntN(100) == 0 {
		status = http.StatusInternalServerError
	}
	id := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
	path := fmt.Sprintf("/api/v1/orders/%d", rng.IntN(1_000_000))
	started := now.Add(-time.Duration(rng.IntN(500)) * time.Millisecond)
	proxy := time.Duration(5+rng.IntN(80)) * time.Millisecond
	reqH := http.Header{
		"Host":            {"shop.example.com"},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
		"Accept":          {"application/json, text/plain, */*"},
		"Accept-Encoding": {"gzip, deflate, br"},
		"X-Forwarded-For": {"203.0.113." + strconv.Itoa(rng.IntN(250))},
		"X-Request-Id":    {id},
		"Authorization":   {"Bearer x"},
	}
	respH := http.Header{
		"Content-Type":            {"application/json; charset=utf-8"},
		"Content-Length":          {strconv.Itoa(200 + rng.IntN(2000))},
		"Connection":              {"keep-alive"},
		"Date":                    {now.UTC().Format(http.TimeFormat)},
		"Via":                     {"1.1 kong/3.9.0"},
		"X-Kong-Upstream-Latency": {strconv.FormatInt(proxy.Milliseconds(), 10)},
		"X-Kong-Proxy-Latency":    {"1"},
	}
	svc := map[string]any{
		"id": "6b1f2b7e-3c1d-4d8e-9a3b-1f2e3d4c5b6a", "name": "checkout", "host": "checkout-up", "port": 80,
		"protocol": "http", "path": nil, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
		"read_timeout": 60000, "created_at": 1733400000, "updated_at": 1733400000, "enabled": true,
		"ws_id": "0dc6f45b-8f8d-40d2-a504-473544ee190b",
	}
	route := map[string]any{
		"id": "9c8b7a6f-5e4d-3c2b-1a09-f8e7d6c5b4a3", "name": "checkout-api", "paths": []string{"/api/v1"},
		"protocols": []string{"http", "https"}, "strip_path": false, "preserve_host": false,
		"https_redirect_status_code": 426, "created_at": 1733400000, "updated_at": 1733400000,
		"ws_id": "0dc6f45b-8f8d-40d2-a504-473544ee190b", "service": map[string]any{"id": "6b1f2b7e-3c1d-4d8e-9a3b-1f2e3d4c5b6a"},
	}
	e := kongtest.LogEntry(kongtest.LogInput{
		Method: http.MethodGet, Host: "shop.example.com", URI: path + "?expand=items", Query: map[string]any{"expand": "items"},
		RequestHeaders: reqH, UpstreamURI: path + "?expand=items", Status: status, ResponseHeaders: respH,
		ResponseSize: 1200, Started: started, Request: proxy + 2*time.Millisecond, Proxy: proxy,
		Tries: []kongtest.Try{{IP: host, Port: pn, Start: started}}, ClientIP: "10.0.0.7",
		Service: svc, Route: route, RequestID: id[:24],
	})
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return b
}

// benchBatch is a JSON array of n entries, as Kong's queue sends with max_batch_size > 1.
func benchBatch(rng *rand.Rand, now time.Time, n int) []byte {
	parts := make([][]byte, n)
	for i := range parts {
		parts[i] = benchEntry(rng, now)
	}
	return append(append([]byte("["), bytes.Join(parts, []byte(","))...), ']')
}

// cpuTime is the CPU time (user + system) the process has used so far: entries per CPU-second is
// a throughput per core that a machine shared with other work does not distort as much as wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident set (VmHWM), in MiB, or 0 where /proc is missing.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkLogReceiverHTTP posts realistic Kong 3.x http-log batches of 100 entries (about 1.4 KB
// each) from several concurrent "Kong nodes" (one keep-alive connection each) to the kong-log
// receiver over loopback HTTP, with the posting client on the same cores. One op is one batch.
// Reported: entries/s, entries/s per core (GOMAXPROCS), the peak heap in use (sampled) and the
// process's peak RSS (client included). Rerun: make bench-kong-log, or
//
//	go test -run '^$' -bench BenchmarkLogReceiverHTTP -benchtime 20000x ./providers/kong/
func BenchmarkLogReceiverHTTP(b *testing.B) {
	for _, nodes := range []int{4} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { benchReceiverHTTP(b, nodes) })
	}
}

func benchReceiverHTTP(b *testing.B, nodes int) {
	const batch = 100
	rec, post := benchReceiver(b)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	bodies := make([][]byte, 32)
	size := 0
	for i := range bodies {
		bodies[i] = benchBatch(rng, now, batch)
		size += len(bodies[i])
	}

	runtime.GC() // the receivers of earlier runs are gone: the peak is this run's
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// runtime/metrics reads without stopping the world (runtime.ReadMemStats would, and skew
		// the throughput)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if inuse := sample[0].Value.Uint64() + sample[1].Value.Uint64(); inuse > peakHeap.Load() {
				peakHeap.Store(inuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for n := 0; n < nodes; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := post(client, bodies[i%int64(len(bodies))]); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	close(stop)
	<-sampled
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d posts failed", f, b.N)
	}
	received, _ := rec.Stats()
	if received != b.N*batch {
		b.Fatalf("receiver counted %d entries, posted %d", received, b.N*batch)
	}
	eps := float64(b.N*batch) / elapsed.Seconds()
	b.ReportMetric(float64(size)/float64(len(bodies)*batch), "B/entry")
	b.ReportMetric(eps, "entries/s")
	b.ReportMetric(eps/float64(runtime.GOMAXPROCS(0)), "entries/s/core")
	// per CPU-second of the whole process (receiver and posting client): what one core sustains
	b.ReportMetric(float64(b.N*batch)/cpu.Seconds(), "entries/cpu-s")
	b.ReportMetric(float64(peakHeap.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(peakRSS(), "peak-RSS-MiB")
}

// benchReceiver starts a receiver that knows the benchmark's targets and returns it with a
// function posting one body to it.
func benchReceiver(b *testing.B) (*LogReceiver, func(*http.Client, []byte) error) {
	b.Helper()
	rec, err := NewLogReceiver(LogConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rec.Close() })
	byCohort := map[providers.Cohort][]string{}
	for _, t := range benchTargets {
		byCohort[t.cohort] = append(byCohort[t.cohort], t.addr)
	}
	for c, addrs := range byCohort {
		if err := rec.SetCohort(c, addrs); err != nil {
			b.Fatal(err)
		}
	}
	url, auth := rec.URL(), rec.authorization()
	return rec, func(c *http.Client, body []byte) error {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// BenchmarkLogDecode decodes one batch of 100 realistic entries into records, without HTTP: the
// receiver's hot path. One op is one batch; allocs/op must stay 0.
func BenchmarkLogDecode(b *testing.B) {
	rec, _ := benchReceiver(b)
	body := benchBatch(rand.New(rand.NewPCG(1, 2)), time.Now(), 100)
	wk := &logWorker{}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		wk.recs, wk.n = wk.recs[:0], entryCounts{}
		if err := rec.decode(body, wk, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(wk.recs) != 100 {
		b.Fatalf("decoded %d records, want 100", len(wk.recs))
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N*100)/(cpuTime()-cpu0).Seconds(), "entries/cpu-s")
}
