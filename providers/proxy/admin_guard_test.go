package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// startInsecureAdmin serves the admin API without a token, as `--admin-insecure` does.
func startInsecureAdmin(t testing.TB, p *Proxy) *httptest.Server {
	t.Helper()
	h, err := p.AdminHandler(AdminConfig{NoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestAdminRefusesCrossSite plays what a web page can make a browser send to a loopback admin
// API: a simple cross-site form POST (no preflight), and the same-origin calls a DNS-rebound page
// makes (its own name in Host and Origin, any header it likes). Every one is refused with the
// status and the fix named, and the split is unchanged; canaryctl's client and curl with the
// documented headers keep working.
func TestAdminRefusesCrossSite(t *testing.T) {
	t.Parallel()
	stable, _, canary, _ := three(t)
	for _, mode := range []struct {
		name     string
		insecure bool
	}{{"insecure", true}, {"token", false}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			p, _ := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{
				providers.Stable: {stable.url()}, providers.Canary: {canary.url()}}})
			if err := p.SetSplit(t.Context(), providers.Split{Canary: 1000}); err != nil {
				t.Fatal(err)
			}
			var admin *httptest.Server
			auth := ""
			if mode.insecure {
				admin = startInsecureAdmin(t, p)
			} else {
				admin = startAdmin(t, p)
				auth = "Bearer " + adminToken
			}
			_, port, _ := net.SplitHostPort(admin.Listener.Addr().String())
			form := "application/x-www-form-urlencoded"
			evil := "http://evil.example"
			for _, tc := range []struct {
				name, method, path, host, origin, ctype, secFetch, custom string
				want                                                      int
				wantIn                                                    string // in the error message
				tokenWant                                                 int    // with a token, when it differs
			}{
				{name: "form POST to promote from a foreign origin", method: "POST", path: "/v1/promote",
					origin: evil, ctype: form, want: 403, wantIn: "Origin"},
				{name: "form POST to rollback from a foreign origin", method: "POST", path: "/v1/rollback",
					origin: evil, ctype: form, want: 403, wantIn: "Origin"},
				{name: "text/plain POST to rollback, cross-site by Sec-Fetch-Site", method: "POST", path: "/v1/rollback",
					ctype: "text/plain", secFetch: "cross-site", want: 403, wantIn: "Sec-Fetch-Site"},
				{name: "form POST to promote without Origin", method: "POST", path: "/v1/promote",
					ctype: form, want: 415, wantIn: "Content-Type: application/json"},
				{name: "bare POST to rollback", method: "POST", path: "/v1/rollback",
					want: 415, wantIn: AdminHeader},
				{name: "form-encoded PUT of the split", method: "PUT", path: "/v1/split",
					ctype: form, want: 415, wantIn: "Content-Type: application/json"},
				{name: "GET of the state from a foreign origin", method: "GET", path: "/v1/state",
					origin: evil, want: 403, wantIn: "Origin"},
				{name: "rebound name sets the split with JSON", method: "PUT", path: "/v1/split",
					host: "evil.example:" + port, origin: "http://evil.example:" + port, ctype: "application/json",
					want: 403, wantIn: "Host", tokenWant: 200},
				{name: "rebound name reads the request log", method: "GET", path: "/v1/requests",
					host: "rebind.evil.example:" + port, custom: "1", want: 403, wantIn: "127.0.0.1", tokenWant: 200},
				{name: "rebound name without port", method: "GET", path: "/v1/state",
					host: "evil.example", want: 403, wantIn: "Host", tokenWant: 200},
				// what keeps working
				{name: "same-origin Origin on a read", method: "GET", path: "/v1/state",
					origin: "http://" + admin.Listener.Addr().String(), want: 200},
				{name: "localhost read", method: "GET", path: "/v1/split", host: "localhost:" + port, want: 200},
				{name: "IPv6 loopback literal read", method: "GET", path: "/v1/split", host: "[::1]:" + port, want: 200},
				{name: "curl JSON PUT of the split", method: "PUT", path: "/v1/split",
					ctype: "application/json; charset=utf-8", want: 200},
				{name: "rollback with the canaryctl header", method: "POST", path: "/v1/rollback", custom: "1", want: 200},
			} {
				t.Run(tc.name, func(t *testing.T) {
					body := `{"canary":1000}`
					req, err := http.NewRequest(tc.method, admin.URL+tc.path, strings.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					if tc.host != "" {
						req.Host = tc.host
					}
					for k, v := range map[string]string{"Origin": tc.origin, "Content-Type": tc.ctype,
						"Sec-Fetch-Site": tc.secFetch, AdminHeader: tc.custom, "Authorization": auth} {
						if v != "" {
							req.Header.Set(k, v)
						}
					}
					before, _ := p.Split(t.Context())
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					var eb errorBody
					_ = json.NewDecoder(resp.Body).Decode(&eb)
					want := tc.want
					if !mode.insecure && tc.tokenWant != 0 {
						want = tc.tokenWant
					}
					if resp.StatusCode != want {
						t.Fatalf("status %d (%q), want %d", resp.StatusCode, eb.Error, want)
					}
					if want/100 == 2 {
						return
					}
					if !strings.Contains(eb.Error, tc.wantIn) {
						t.Errorf("error %q does not name %q", eb.Error, tc.wantIn)
					}
					if after, _ := p.Split(t.Context()); after != before {
						t.Errorf("a refused call changed the split from %v to %v", before, after)
					}
				})
			}
		})
	}
}

// TestClientWorksWithInsecureAdmin: canaryctl's own client drives an --admin-insecure API,
// including the body-less POSTs.
func TestClientWorksWithInsecureAdmin(t *testing.T) {
	t.Parallel()
	stable, _, canary, _ := three(t)
	p, _ := startProxy(t, Config{Upstreams: map[providers.Cohort][]string{providers.Stable: {stable.url()}}})
	admin := startInsecureAdmin(t, p)
	for _, base := range []string{admin.URL, strings.Replace(admin.URL, "127.0.0.1", "localhost", 1)} {
		cl, err := NewClient(ClientConfig{BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		for _, step := range []struct {
			name string
			do   func() error
		}{
			{"set canary upstreams", func() error { return cl.SetUpstreams(ctx, providers.Canary, []string{canary.url()}) }},
			{"set split", func() error { return cl.SetSplit(ctx, providers.Split{Canary: 500}) }},
			{"rollback", func() error { return cl.Rollback(ctx) }},
			{"set canary upstreams again", func() error { return cl.SetUpstreams(ctx, providers.Canary, []string{canary.url()}) }},
			{"promote", func() error { return cl.Promote(ctx) }},
			{"read state", func() error { _, err := cl.State(ctx); return err }},
		} {
			if err := step.do(); err != nil {
				t.Fatalf("%s via %s: %v", step.name, base, err)
			}
		}
	}
}
