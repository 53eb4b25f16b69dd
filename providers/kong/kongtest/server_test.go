package kongtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) do(method, path string, body any) (int, map[string]any, http.Header) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Kong-Admin-Token", c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			c.t.Fatalf("%s %s: body %q is not a JSON object", method, path, raw)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func seeded(t *testing.T, opts ...Option) (*Server, client) {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	if _, err := s.Create("", "upstreams", map[string]any{"name": "up"}); err != nil {
		t.Fatal(err)
	}
	return s, client{t: t, base: s.AdminURL()}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestTargetRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		want   string // JSON the answer must equal (fields compared as JSON), or "" to skip
	}{
		{"create with default weight and port", "POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.1"}, 201, ""},
		{"weight above 65535", "POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.2:80", "weight": 70000}, 400,
			`{"code":2,"fields":{"weight":"value should be between 0 and 65535"},"message":"schema violation (weight: value should be between 0 and 65535)","name":"schema violation"}`},
		{"weight not an integer", "POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.2:80", "weight": "heavy"}, 400,
			`{"code":2,"fields":{"weight":"expected an integer"},"message":"schema violation (weight: expected an integer)","name":"schema violation"}`},
		{"missing target and unknown field", "POST", "/upstreams/up/targets", map[string]any{"colour": "red"}, 400,
			`{"code":2,"fields":{"colour":"unknown field","target":"required field missing"},"message":"2 schema violations (colour: unknown field; target: required field missing)","name":"schema violation"}`},
		{"bad hostname", "POST", "/upstreams/up/targets", map[string]any{"target": "bad!host"}, 400,
			`{"code":2,"fields":{"target":"Invalid target ('bad!host'); not a valid hostname or ip address"},"message":"schema violation (target: Invalid target ('bad!host'); not a valid hostname or ip address)","name":"schema violation"}`},
		{"unknown upstream", "POST", "/upstreams/nope/targets", map[string]any{"target": "10.0.0.3"}, 404, `{"message":"Not found"}`},
		{"unknown path", "GET", "/nothing", nil, 404, `{"message":"Not found"}`},
		{"DELETE on the collection", "DELETE", "/upstreams/up/targets", nil, 405, `{"message":"Method not allowed"}`},
		{"PUT on the collection", "PUT", "/upstreams", nil, 405, `{"message":"Method not allowed"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := seeded(t)
			status, body, _ := c.do(tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %v)", status, tc.status, body)
			}
			if tc.want != "" && js(body) != tc.want {
				t.Fatalf("body\n %s\nwant\n %s", js(body), tc.want)
			}
		})
	}
}

func TestTargetLifecycle(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	status, tg, _ := c.do("POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.1", "tags": []string{"a"}})
	if status != 201 || tg["target"] != "10.0.0.1:8000" || tg["weight"] != 100.0 {
		t.Fatalf("POST = %d %v; want 201 10.0.0.1:8000 weight 100", status, tg)
	}
	upID := s.Entity("upstreams", "up")["id"]
	// 409 with Kong's unique-violation body on a second POST of the same address
	status, body, _ := c.do("POST", "/upstreams/up/targets", map[string]any{"target": "10.0.0.1:8000"})
	want := fmt.Sprintf(`{"code":5,"fields":{"target":"10.0.0.1:8000","upstream":{"id":"%s"}},"message":"UNIQUE violation detected on '{target=\"10.0.0.1:8000\",upstream={id=\"%s\"}}'","name":"unique constraint violation"}`, upID, upID)
	if status != 409 || js(body) != want {
		t.Fatalf("second POST = %d %s\nwant 409 %s", status, js(body), want)
	}
	// PATCH by address keeps the tags, PATCH by id
	if status, body, _ = c.do("PATCH", "/upstreams/up/targets/10.0.0.1:8000", map[string]any{"weight": 7}); status != 200 || body["weight"] != 7.0 || js(body["tags"]) != `["a"]` {
		t.Fatalf("PATCH by address = %d %v", status, body)
	}
	if status, body, _ = c.do("PATCH", "/upstreams/up/targets/"+tg["id"].(string), map[string]any{"weight": 0}); status != 200 || body["weight"] != 0.0 {
		t.Fatalf("PATCH by id = %d %v", status, body)
	}
	// PUT of a target is an update of the fields sent, like PATCH, and a 404 for a target that is
	// not there (kong/api/routes/upstreams.lua, 3.x: target_endpoint -> update_target_cb)
	if status, body, _ = c.do("PUT", "/upstreams/up/targets/10.0.0.1:8000", map[string]any{"weight": 3}); status != 200 || body["weight"] != 3.0 || js(body["tags"]) != `["a"]` || body["id"] != tg["id"] {
		t.Fatalf("PUT = %d %v", status, body)
	}
	if status, _, _ = c.do("PUT", "/upstreams/up/targets/10.0.0.9:8000", map[string]any{"weight": 3}); status != 404 {
		t.Fatalf("PUT of a missing target = %d, want 404", status)
	}
	if status, body, _ = c.do("GET", "/upstreams/up/targets/10.0.0.1:8000", nil); status != 200 || body["id"] != tg["id"] {
		t.Fatalf("GET by address = %d %v", status, body)
	}
	// DELETE answers 204, and 404 once the target is gone (target_endpoint looks it up first)
	for i, want := range []int{204, 404} {
		if status, _, _ = c.do("DELETE", "/upstreams/up/targets/10.0.0.1:8000", nil); status != want {
			t.Fatalf("DELETE #%d = %d, want %d", i+1, status, want)
		}
	}
	if status, _, _ = c.do("GET", "/upstreams/up/targets/10.0.0.1:8000", nil); status != 404 {
		t.Fatalf("GET after DELETE = %d", status)
	}
}

func TestPaginationAndTags(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	for i := 0; i < 25; i++ {
		tags := []string{"all", fmt.Sprintf("mod3-%d", i%3)}
		if _, err := s.Create("", "targets", map[string]any{"upstream": "up", "target": fmt.Sprintf("10.0.0.%d:80", i), "tags": tags}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	path := "/upstreams/up/targets?size=10"
	pages := 0
	for path != "" {
		status, body, _ := c.do("GET", path, nil)
		if status != 200 {
			t.Fatalf("GET %s = %d %v", path, status, body)
		}
		pages++
		for _, d := range body["data"].([]any) {
			seen = append(seen, d.(map[string]any)["target"].(string))
		}
		path = ""
		if next, ok := body["next"].(string); ok {
			if body["offset"] == nil {
				t.Fatalf("page with next but no offset: %v", body)
			}
			path = next
		}
	}
	if pages != 3 || len(seen) != 25 || seen[0] != "10.0.0.0:80" || seen[24] != "10.0.0.24:80" {
		t.Fatalf("%d pages, %d targets (%v)", pages, len(seen), seen)
	}
	// The tags filter works on a top-level collection (/targets) and is ignored on a nested one
	// (/upstreams/{u}/targets): Kong's postgres strategy pages a foreign-key collection with its
	// page_for_<fk> statement and never looks at options.tags (kong/db/strategies/postgres/init.lua,
	// page(); Kong 3.0-3.10), as the Admin API reference says and Kong/kong#6779 shows. Its syntax
	// is still checked (kong/api/endpoints.lua extract_options): a mixed a,b/c filter is a 400.
	for _, tc := range []struct {
		path   string
		status int
		n      int
	}{
		{"/targets?tags=mod3-0", 200, 9},
		{"/targets?tags=mod3-0/mod3-1", 200, 17}, // any of
		{"/targets?tags=all,mod3-2", 200, 8},     // all of
		{"/upstreams/up/targets?tags=mod3-0", 200, 25},
		{"/upstreams/up/targets?tags=mod3-0/mod3-1", 200, 25},
		{"/upstreams/up/targets?tags=all,mod3-2", 200, 25},
		{"/upstreams/up/targets?tags=all,mod3-2/x", 400, 0},
		{"/upstreams/up/targets?size=0", 400, 0},
		{"/upstreams/up/targets?size=1001", 400, 0},
		{"/upstreams/up/targets?offset=bogus", 400, 0},
	} {
		status, body, _ := c.do("GET", tc.path+"&size=1000", nil)
		if strings.Contains(tc.path, "size=") || strings.Contains(tc.path, "offset=") {
			status, body, _ = c.do("GET", tc.path, nil)
		}
		if status != tc.status {
			t.Fatalf("GET %s = %d %v, want %d", tc.path, status, body, tc.status)
		}
		if status == 200 && len(body["data"].([]any)) != tc.n {
			t.Fatalf("GET %s: %d targets, want %d", tc.path, len(body["data"].([]any)), tc.n)
		}
	}
}

func TestAuthAndWorkspaces(t *testing.T) {
	t.Parallel()
	s := New(WithToken("rw"), WithReadOnlyToken("ro"), WithWorkspaces("team-a"))
	t.Cleanup(s.Close)
	for _, tc := range []struct {
		token, method, path string
		status              int
		msg                 string
	}{
		{"", "GET", "/upstreams", 401, "Invalid credentials. Token or User credentials required"},
		{"wrong", "GET", "/upstreams", 401, "Invalid credentials. Token or User credentials required"},
		{"ro", "GET", "/upstreams", 200, ""},
		{"ro", "POST", "/upstreams", 403, "you do not have permissions to create this resource"},
		{"rw", "POST", "/team-a/upstreams", 201, ""},
		{"rw", "GET", "/team-a/upstreams/up-a", 200, ""},
		{"rw", "GET", "/upstreams/up-a", 404, "Not found"}, // other workspace
		{"rw", "GET", "/team-b/upstreams", 404, "Not found"},
	} {
		c := client{t: t, base: s.AdminURL(), token: tc.token}
		var body any
		if tc.method == "POST" {
			body = map[string]any{"name": "up-a"}
		}
		status, got, _ := c.do(tc.method, tc.path, body)
		if status != tc.status || tc.msg != "" && got["message"] != tc.msg {
			t.Fatalf("%s %s with token %q = %d %v, want %d %q", tc.method, tc.path, tc.token, status, got, tc.status, tc.msg)
		}
	}
}

func TestUpstreamHashRules(t *testing.T) {
	t.Parallel()
	_, c := seeded(t)
	status, body, _ := c.do("PATCH", "/upstreams/up", map[string]any{"hash_on": "header"})
	want := `{"code":2,"fields":{"@entity":["failed conditional validation given value of field 'hash_on'"],"hash_on_header":"required field missing"},"message":"2 schema violations (failed conditional validation given value of field 'hash_on'; hash_on_header: required field missing)","name":"schema violation"}`
	if status != 400 || js(body) != want {
		t.Fatalf("PATCH hash_on header alone = %d %s", status, js(body))
	}
	if status, body, _ = c.do("PATCH", "/upstreams/up", map[string]any{"hash_on": "moon"}); status != 400 || !strings.Contains(js(body), "expected one of: none, consumer, ip") {
		t.Fatalf("PATCH hash_on moon = %d %v", status, body)
	}
}

func TestDBLessConfig(t *testing.T) {
	t.Parallel()
	s := New(WithDBLess())
	t.Cleanup(s.Close)
	c := client{t: t, base: s.AdminURL()}
	if status, body, _ := c.do("POST", "/upstreams", map[string]any{"name": "x"}); status != 405 ||
		js(body) != `{"code":12,"message":"cannot create 'upstreams' entities when not using a database","name":"operation unsupported"}` {
		t.Fatalf("entity POST in DB-less = %d %s, want 405 operation unsupported", status, js(body))
	}
	cfg := map[string]any{"_format_version": "3.0", "upstreams": []any{map[string]any{"name": "up", "targets": []any{map[string]any{"target": "10.0.0.1:80", "weight": 5}}}}}
	if status, body, _ := c.do("POST", "/config?check_hash=1", cfg); status != 201 {
		t.Fatalf("POST /config = %d %v", status, body)
	}
	if status, _, _ := c.do("POST", "/config?check_hash=1", cfg); status != 304 {
		t.Fatalf("same config again with check_hash=1 = %d, want 304", status)
	}
	s.BusyConfig(7)
	cfg["upstreams"].([]any)[0].(map[string]any)["targets"].([]any)[0].(map[string]any)["weight"] = 6
	status, body, hdr := c.do("POST", "/config?check_hash=1", cfg)
	if status != 429 || hdr.Get("Retry-After") != "7" || body["message"] != "Currently loading previous configuration" {
		t.Fatalf("busy POST /config = %d %v Retry-After %q", status, body, hdr.Get("Retry-After"))
	}
	if status, _, _ = c.do("POST", "/config?check_hash=1", cfg); status != 201 {
		t.Fatalf("retried POST /config = %d", status)
	}
	status, body, _ = c.do("GET", "/config", nil)
	if status != 200 || !strings.Contains(body["config"].(string), "weight: 6") {
		t.Fatalf("GET /config = %d %v", status, body)
	}
	bad := map[string]any{"_format_version": "3.0", "upstreams": []any{map[string]any{"name": "up", "targets": []any{map[string]any{"target": "10.0.0.1:80", "weight": -1}}}}}
	if status, body, _ = c.do("POST", "/config", bad); status != 400 || body["code"] != 14.0 || !strings.Contains(js(body), "value should be between 0 and 65535") {
		t.Fatalf("invalid config = %d %v", status, body)
	}
	if ts := s.Targets("up"); len(ts) != 1 || ts[0].Weight != 6 {
		t.Fatalf("targets after the invalid config = %+v, want the last valid one", ts)
	}
}

func backendServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.URL.Path)
	}))
	t.Cleanup(b.Close)
	return b
}

// closingListener listens on 127.0.0.1 until the test ends and closes every connection it accepts
// before reading anything; it returns its address.
func closingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at the end of the test
			}
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestDataPlane(t *testing.T) {
	t.Parallel()
	s, _ := seeded(t)
	a, b := backendServer(t, "a"), backendServer(t, "b")
	addr := func(x *httptest.Server) string { return strings.TrimPrefix(x.URL, "http://") }
	// a dead target: it closes every connection without an answer (nginx: "upstream prematurely
	// closed connection", an error proxy_next_upstream retries) and Kong retries the next target.
	// The listener stays open for the whole test: a closed port could be taken by another process.
	dead := closingListener(t)
	mustCreate := func(kind string, body map[string]any) {
		if _, err := s.Create("", kind, body); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate("services", map[string]any{"name": "svc", "host": "up", "path": "/base"})
	mustCreate("routes", map[string]any{"paths": []string{"/api"}, "service": map[string]any{"name": "svc"}})
	proxyGet := func() (int, string) {
		resp, err := http.Get(s.ProxyURL() + "/api/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := proxyGet(); status != 503 || !strings.Contains(body, "failure to get a peer from the ring-balancer") {
		t.Fatalf("no targets: %d %s", status, body)
	}
	mustCreate("targets", map[string]any{"upstream": "up", "target": addr(a), "weight": 3})
	mustCreate("targets", map[string]any{"upstream": "up", "target": addr(b), "weight": 1})
	mustCreate("targets", map[string]any{"upstream": "up", "target": dead, "weight": 0})
	got := map[string]int{}
	for i := 0; i < 40; i++ {
		status, body := proxyGet()
		if status != 200 {
			t.Fatalf("status %d %s", status, body)
		}
		got[body]++
	}
	if got["a /base/x"] != 30 || got["b /base/x"] != 10 { // strip_path and the service path
		t.Fatalf("weighted round-robin 3:1 over 40 requests = %v", got)
	}
	if resp, err := http.Get(s.ProxyURL() + "/other"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("unrouted path: %v %v", resp, err)
	}
	// the dead target gets weight: its requests are retried on a live target, none fails
	c := client{t: t, base: s.AdminURL()}
	if status, _, _ := c.do("PATCH", "/upstreams/up/targets/"+dead, map[string]any{"weight": 4}); status != 200 {
		t.Fatal("PATCH dead target")
	}
	for i := 0; i < 16; i++ {
		if status, body := proxyGet(); status != 200 {
			t.Fatalf("request %d with a dead target: %d %s", i, status, body)
		}
	}
}

func TestHTTPLog(t *testing.T) {
	t.Parallel()
	s, _ := seeded(t)
	a := backendServer(t, "a")
	var mu sync.Mutex
	var bodies [][]any
	got := make(chan struct{}, 100)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &batch); err != nil {
			t.Errorf("http-log body is not a JSON array: %s", raw)
		}
		mu.Lock()
		bodies = append(bodies, batch)
		mu.Unlock()
		got <- struct{}{}
	}))
	t.Cleanup(recv.Close)
	for kind, body := range map[string]map[string]any{"services": {"name": "svc", "host": "up"}} {
		if _, err := s.Create("", kind, body); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []struct {
		kind string
		body map[string]any
	}{
		{"routes", map[string]any{"paths": []string{"/"}, "service": map[string]any{"name": "svc"}}},
		{"targets", map[string]any{"upstream": "up", "target": strings.TrimPrefix(a.URL, "http://")}},
		{"plugins", map[string]any{"name": "http-log", "service": map[string]any{"name": "svc"},
			"config": map[string]any{"http_endpoint": recv.URL, "queue": map[string]any{"max_batch_size": 5, "max_coalescing_delay": 0.05}}}},
	} {
		if _, err := s.Create("", x.kind, x.body); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i++ {
		resp, err := http.Get(s.ProxyURL() + "/p?i=1")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	n := 0
	timeout := time.After(10 * time.Second)
	for n < 12 {
		select {
		case <-got:
		case <-timeout:
			t.Fatalf("only %d entries logged", n)
		}
		mu.Lock()
		n = 0
		for _, b := range bodies {
			n += len(b)
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		if len(b) > 5 {
			t.Fatalf("batch of %d entries, max_batch_size 5", len(b))
		}
	}
	e := bodies[0][0].(map[string]any)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(a.URL, "http://"))
	try := e["tries"].([]any)[0].(map[string]any)
	if try["ip"] != host || fmt.Sprint(try["port"]) != port || e["upstream_uri"] != "/p?i=1" ||
		e["response"].(map[string]any)["status"] != 200.0 || e["started_at"] == nil ||
		e["latencies"].(map[string]any)["proxy"] == nil || e["latencies"].(map[string]any)["kong"] == nil ||
		e["latencies"].(map[string]any)["request"] == nil || e["request"].(map[string]any)["method"] != "GET" {
		t.Fatalf("entry = %s", js(e))
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	s.InjectOutage(Outage{Kind: Fault503, After: 1, For: 2})
	var statuses []int
	for i := 0; i < 4; i++ {
		st, _, _ := c.do("GET", "/upstreams/up", nil)
		statuses = append(statuses, st)
	}
	if fmt.Sprint(statuses) != "[200 503 503 200]" {
		t.Fatalf("statuses = %v", statuses)
	}
	s.InjectOutage(Outage{Kind: FaultRefused})
	if _, err := http.Get(s.AdminURL() + "/upstreams"); err == nil {
		t.Fatal("admin API answered during a refused outage")
	}
	s.Restore()
	if st, _, _ := c.do("GET", "/upstreams/up", nil); st != 200 {
		t.Fatalf("after Restore: %d", st)
	}
}

// TestPartialOutage: an outage with PathContains fails and counts only the matching requests; the
// others are served in between, without using up the outage.
func TestPartialOutage(t *testing.T) {
	t.Parallel()
	s, c := seeded(t)
	s.InjectOutage(Outage{Kind: Fault503, After: 1, For: 2, PathContains: "/targets"})
	var got []string
	for _, p := range []string{"/upstreams/up/targets", "/upstreams/up", "/upstreams/up/targets", "/upstreams/up", "/upstreams/up/targets", "/upstreams/up/targets"} {
		st, _, _ := c.do("GET", p, nil)
		got = append(got, fmt.Sprintf("%s %d", p, st))
	}
	want := "[/upstreams/up/targets 200 /upstreams/up 200 /upstreams/up/targets 503 /upstreams/up 200 /upstreams/up/targets 503 /upstreams/up/targets 200]"
	if fmt.Sprint(got) != want {
		t.Fatalf("answers = %v\nwant      %v", got, want)
	}
}

// TestHTTPLogHeaders: config.headers is Kong 3.x's map of header name to one string, without the
// headers Kong sets itself.
func TestHTTPLogHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers any
		ok      bool
	}{
		{"one string per header", map[string]any{"Authorization": "Bearer x"}, true},
		{"an array per header (Kong 2.x)", map[string]any{"Authorization": []any{"Bearer x"}}, false},
		{"Host", map[string]any{"Host": "x"}, false},
		{"content-type", map[string]any{"content-type": "x"}, false},
		{"bad name", map[string]any{"X Y": "x"}, false},
	} {
		s := New()
		if _, err := s.Create("", "services", map[string]any{"name": "web", "host": "web-up"}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Create("", "plugins", map[string]any{"name": "http-log", "service": map[string]any{"name": "web"},
			"config": map[string]any{"http_endpoint": "http://127.0.0.1:1/", "headers": tc.headers}})
		s.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
