package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/canaryctl/canaryctl/providers"
)

// geoEntry is one network of a test database, in the GeoIP2 Country layout.
type geoEntry struct {
	cidr                 string
	country, registered  string
	continent            string
	leaveOutCountryField bool
}

// writeMMDB builds a small MaxMind DB with mmdbwriter (the library MaxMind builds its own
// databases with) and renames it over path, as a database updater does.
func writeMMDB(t testing.TB, path string, entries []geoEntry) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "canaryctl-test-Country", RecordSize: 24,
		Description:             map[string]string{"en": "canaryctl test networks"},
		IncludeReservedNetworks: true}) // the tests' networks are loopback and documentation ranges
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		_, n, err := net.ParseCIDR(e.cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"continent": mmdbtype.Map{"code": mmdbtype.String(e.continent)}}
		if !e.leaveOutCountryField {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(e.country)}
		}
		if e.registered != "" {
			rec["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(e.registered)}
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testGeo: 198.51.100.0/24 is in Germany, 203.0.113.0/24 in Austria, 192.0.2.0/25 in the US,
// 2001:db8:de::/48 in Germany, 127.0.0.2 (a loopback address a client can bind) in Germany,
// 100.64.0.0/16 has no country, only a registered one (France). Everything else is unknown.
var testGeo = []geoEntry{
	{cidr: "198.51.100.0/24", country: "DE", continent: "EU"},
	{cidr: "203.0.113.0/24", country: "AT", continent: "EU"},
	{cidr: "192.0.2.0/25", country: "US", continent: "NA"},
	{cidr: "2001:db8:de::/48", country: "DE", continent: "EU"},
	{cidr: "127.0.0.2/32", country: "DE", continent: "EU"},
	{cidr: "100.64.0.0/16", registered: "FR", continent: "EU", leaveOutCountryField: true},
}

func geoFile(t testing.TB, entries []geoEntry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "country.mmdb")
	writeMMDB(t, path, entries)
	return path
}

func TestCountryRulesUseTheGeoIPDatabase(t *testing.T) {
	t.Parallel()
	db := geoFile(t, testGeo)
	ups := map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}, "canary": {"http://127.0.0.1:2"}}
	countryRule := []Rule{{Name: "dach", Match: Match{Country: []string{"DE", "at"}}, Cohort: providers.Canary}}
	continentRule := []Rule{{Name: "na", Match: Match{Continent: []string{"NA"}}, Cohort: providers.Canary}}
	for _, tc := range []struct {
		name   string
		rules  []Rule
		trust  bool
		remote string
		xff    []string
		want   int
		byRule bool
	}{
		{name: "connection ip in germany", rules: countryRule, remote: "198.51.100.7:4000", want: iCanary, byRule: true},
		{name: "connection ip in austria", rules: countryRule, remote: "203.0.113.9:4000", want: iCanary, byRule: true},
		{name: "ipv6 in germany", rules: countryRule, remote: "[2001:db8:de::1]:4000", want: iCanary, byRule: true},
		{name: "ipv4-mapped ipv6", rules: countryRule, remote: "[::ffff:198.51.100.7]:4000", want: iCanary, byRule: true},
		{name: "connection ip in the us", rules: countryRule, remote: "192.0.2.1:4000", want: iStable},
		{name: "unknown ip", rules: countryRule, remote: "192.0.2.200:4000", want: iStable},
		{name: "registered country when country is absent", rules: []Rule{{Match: Match{Country: []string{"FR"}}, Cohort: providers.Canary}},
			remote: "100.64.1.1:4000", want: iCanary, byRule: true},
		{name: "continent", rules: continentRule, remote: "192.0.2.1:4000", want: iCanary, byRule: true},
		{name: "continent misses", rules: continentRule, remote: "198.51.100.7:4000", want: iStable},
		{name: "spoofed xff ignored without trustForwarded", rules: countryRule, remote: "192.0.2.200:4000",
			xff: []string{"198.51.100.7"}, want: iStable},
		{name: "xff used with trustForwarded", rules: countryRule, trust: true, remote: "192.0.2.200:4000",
			xff: []string{"198.51.100.7"}, want: iCanary, byRule: true},
		{name: "trusted hop is the last entry, not a client-sent one", rules: countryRule, trust: true, remote: "192.0.2.200:4000",
			xff: []string{"198.51.100.7, 192.0.2.1"}, want: iStable},
		{name: "last entry of the last header", rules: countryRule, trust: true, remote: "192.0.2.200:4000",
			xff: []string{"192.0.2.1", "192.0.2.5, 203.0.113.4"}, want: iCanary, byRule: true},
		{name: "trusted entry with a port", rules: countryRule, trust: true, remote: "192.0.2.200:4000",
			xff: []string{"[2001:db8:de::9]:443"}, want: iCanary, byRule: true},
		{name: "unparseable trusted entry is no country", rules: countryRule, trust: true, remote: "198.51.100.7:4000",
			xff: []string{"unknown"}, want: iStable},
		{name: "no xff with trustForwarded: the connection", rules: countryRule, trust: true, remote: "198.51.100.7:4000",
			want: iCanary, byRule: true},
		{name: "deny by country", rules: nil, remote: "198.51.100.7:4000", want: iStable, byRule: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Upstreams: ups, Rules: tc.rules, TrustForwarded: tc.trust, GeoIP: GeoIPConfig{MMDBFile: db}}
			if tc.rules == nil { // deny case: everything else would go to canary
				cfg.Split = providers.Split{Canary: providers.BasisPoints}
				cfg.Deny = []Match{{Country: []string{"DE"}}}
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			r, err := http.NewRequest(http.MethodGet, "http://x/", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			ci, byRule := p.decide(p.table.Load(), r)
			if ci != tc.want || byRule != tc.byRule {
				t.Fatalf("decide = %s byRule %v, want %s byRule %v", cohortNames[ci], byRule, cohortNames[tc.want], tc.byRule)
			}
		})
	}
}

// TestCountryRuleThroughTheProxy: real clients, two real upstreams, both fronts. The client binds
// 127.0.0.2 (Germany in the test database) or 127.0.0.1 (unknown); X-Forwarded-For is a spoof
// unless trustForwarded is set.
func TestCountryRuleThroughTheProxy(t *testing.T) {
	t.Parallel()
	db := geoFile(t, testGeo)
	for _, f := range fronts {
		for _, trust := range []bool{false, true} {
			name := f.name + "/trustForwarded=false"
			if trust {
				name = f.name + "/trustForwarded=true"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				stable, _, canary, _ := three(t)
				ups := map[providers.Cohort][]string{providers.Stable: {stable.url()}, providers.Canary: {canary.url()}}
				p, srv := startProxyFront(t, Config{Upstreams: ups, TrustForwarded: trust, GeoIP: GeoIPConfig{MMDBFile: db},
					Rules: []Rule{{Name: "de", Match: Match{Country: []string{"DE"}}, Cohort: providers.Canary}}}, f.netHTTPOnly)
				spoofWant := "stable"
				if trust {
					spoofWant = "canary"
				}
				for _, tc := range []struct {
					name  string
					local string
					xff   string
					want  string
				}{
					{"client ip in the database", "127.0.0.2", "", "canary"},
					{"unknown client ip", "127.0.0.1", "", "stable"},
					{"x-forwarded-for from germany", "127.0.0.1", "198.51.100.7", spoofWant},
					{"x-forwarded-for unknown", "127.0.0.2", "192.0.2.200", map[bool]string{false: "canary", true: "stable"}[trust]},
				} {
					t.Run(tc.name, func(t *testing.T) {
						c := clientFrom(t, tc.local)
						req := newReq(t, srv.URL+"/geo")
						if tc.xff != "" {
							req.Header.Set("X-Forwarded-For", tc.xff)
						}
						before := time.Now()
						if got := get(t, c, req); got != tc.want {
							t.Fatalf("routed to %q, want %q", got, tc.want)
						}
						reqs := samples(t, p, before, 1)
						last := reqs[len(reqs)-1]
						if last.ByRule != (tc.want == "canary") {
							t.Fatalf("recorded %+v: a country rule's requests are kept out of the comparison", last)
						}
					})
				}
			})
		}
	}
}

// clientFrom is an HTTP client whose connections come from the loopback address local.
func clientFrom(t testing.TB, local string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestGeoIPReload(t *testing.T) {
	t.Parallel()
	path := geoFile(t, testGeo)
	var logs logBuffer
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}, "canary": {"http://127.0.0.1:2"}},
		GeoIP:  GeoIPConfig{MMDBFile: path, PollInterval: time.Hour}, // checks are called directly
		Rules:  []Rule{{Match: Match{Country: []string{"DE"}}, Cohort: providers.Canary}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	routes := func(remote string) int {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.RemoteAddr = remote
		ci, _ := p.decide(p.table.Load(), r)
		return ci
	}
	if got := routes("198.51.100.7:1"); got != iCanary {
		t.Fatalf("before reload: %s, want canary", cohortNames[got])
	}
	if reloaded, err := p.geo.check(); reloaded || err != nil {
		t.Fatalf("unchanged file: reloaded %v, %v", reloaded, err)
	}

	// The network moves to the US and a new one joins Germany.
	writeMMDB(t, path, []geoEntry{{cidr: "198.51.100.0/24", country: "US", continent: "NA"}, {cidr: "192.0.2.0/24", country: "DE", continent: "EU"}})
	bumpMTime(t, path)
	if reloaded, err := p.geo.check(); !reloaded || err != nil {
		t.Fatalf("changed file: reloaded %v, %v", reloaded, err)
	}
	if routes("198.51.100.7:1") != iStable || routes("192.0.2.7:1") != iCanary {
		t.Fatal("the reloaded database is not used")
	}

	// A truncated download keeps the database that works, and says so.
	if err := os.WriteFile(path, []byte("not a maxmind db"), 0o644); err != nil {
		t.Fatal(err)
	}
	bumpMTime(t, path)
	if reloaded, err := p.geo.check(); reloaded || err == nil {
		t.Fatalf("bad file: reloaded %v, err %v; want the old database kept with an error", reloaded, err)
	}
	if routes("192.0.2.7:1") != iCanary {
		t.Fatal("a bad file replaced the working database")
	}
	if !strings.Contains(logs.String(), "keeping the loaded one") {
		t.Fatalf("the bad file was not logged: %s", logs.String())
	}
	// The same bad file is not read again on every poll.
	if reloaded, err := p.geo.check(); reloaded || err != nil {
		t.Fatalf("unchanged bad file: reloaded %v, %v", reloaded, err)
	}
	// A removed file keeps the database too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := p.geo.check(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed file: %v, want ErrNotExist", err)
	}
	if routes("192.0.2.7:1") != iCanary {
		t.Fatal("a removed file dropped the working database")
	}
	// A good file again is picked up.
	writeMMDB(t, path, testGeo)
	bumpMTime(t, path)
	if reloaded, err := p.geo.check(); !reloaded || err != nil {
		t.Fatalf("good file again: reloaded %v, %v", reloaded, err)
	}
	if routes("198.51.100.7:1") != iCanary {
		t.Fatal("the good file again is not used")
	}
}

// TestGeoIPPollerReloads: the poller itself notices a replaced file (waiting for the swap, with
// the test's deadline as the bound).
func TestGeoIPPollerReloads(t *testing.T) {
	t.Parallel()
	path := geoFile(t, testGeo)
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}},
		GeoIP: GeoIPConfig{MMDBFile: path, PollInterval: 5 * time.Millisecond},
		Rules: []Rule{{Match: Match{Country: []string{"DE"}}, Cohort: providers.Stable}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	old := p.geo.cur.Load()
	writeMMDB(t, path, []geoEntry{{cidr: "10.0.0.0/8", country: "DE", continent: "EU"}})
	bumpMTime(t, path)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.geo.cur.Load() == old {
		select {
		case <-t.Context().Done():
			t.Fatal("the poller never reloaded the changed file")
		case <-tick.C:
		}
	}
	if g, ok := p.geo.lookup(mustAddr(t, "10.1.2.3")); !ok || g.country != "DE" {
		t.Fatalf("after the poller's reload: %+v %v", g, ok)
	}
}

// bumpMTime moves the file's modification time forward, so a rewrite within the file system's
// timestamp granularity is still seen as a change.
func bumpMTime(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	next := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(path, next, next); err != nil {
		t.Fatal(err)
	}
}

func TestGeoConfigErrors(t *testing.T) {
	t.Parallel()
	db := geoFile(t, testGeo)
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(bad, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	stable := map[providers.Cohort][]string{"stable": {"http://127.0.0.1:1"}}
	country := func(c ...string) []Rule { return []Rule{{Match: Match{Country: c}, Cohort: providers.Canary}} }
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
		noDB  bool
	}{
		{"country without geoip", Config{Upstreams: stable, Rules: country("DE")}, "rules[0].match.country", true},
		{"continent deny without geoip", Config{Upstreams: stable, Deny: []Match{{Continent: []string{"EU"}}}}, "deny[0].continent", true},
		{"allow without geoip", Config{Upstreams: stable, Allow: []Match{{Country: []string{"DE"}}}}, "allow[0].country", true},
		{"not a code", Config{Upstreams: stable, Rules: country("Germany"), GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match.country[0]", false},
		{"unassigned code", Config{Upstreams: stable, Rules: country("DE", "QQ"), GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match.country[1]", false},
		{"uk is gb", Config{Upstreams: stable, Rules: country("UK"), GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match.country[0]", false},
		{"eu is not a country", Config{Upstreams: stable, Rules: country("EU"), GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match.country[0]", false},
		{"bad continent", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Continent: []string{"Europe"}}, Cohort: "canary"}}, GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match.continent[0]", false},
		{"country with equals", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Country: []string{"DE"}, Equals: []string{"x"}}, Cohort: "canary"}}, GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match", false},
		{"country and header", Config{Upstreams: stable, Rules: []Rule{{Match: Match{Country: []string{"DE"}, Header: "X"}, Cohort: "canary"}}, GeoIP: GeoIPConfig{MMDBFile: db}}, "rules[0].match", false},
		{"missing file", Config{Upstreams: stable, Rules: country("DE"), GeoIP: GeoIPConfig{MMDBFile: filepath.Join(t.TempDir(), "none.mmdb")}}, "geoip.mmdbFile", false},
		{"not an mmdb file", Config{Upstreams: stable, Rules: country("DE"), GeoIP: GeoIPConfig{MMDBFile: bad}}, "geoip.mmdbFile", false},
		{"negative poll interval", Config{Upstreams: stable, GeoIP: GeoIPConfig{MMDBFile: db, PollInterval: -time.Second}}, "geoip.pollInterval", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(tc.cfg)
			if err == nil {
				p.Close()
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("error %v, want a ConfigError for %s", err, tc.field)
			}
			if errors.Is(err, ErrNoGeoIP) != tc.noDB {
				t.Fatalf("errors.Is(ErrNoGeoIP) = %v, want %v", !tc.noDB, tc.noDB)
			}
		})
	}
}

func TestParseCountry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"DE", "DE", true}, {"at", "AT", true}, {" us ", "US", true}, {"XK", "XK", true}, {"AQ", "AQ", true},
		{"UK", "", false}, {"EU", "", false}, {"ZZ", "", false}, {"AA", "", false}, {"DEU", "", false}, {"276", "", false}, {"", "", false}, {"D1", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseCountry(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseCountry(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseFileConfigGeoIP(t *testing.T) {
	t.Parallel()
	fc, err := ParseFileConfig([]byte(`
upstreams: {stable: [http://127.0.0.1:9001], canary: [http://127.0.0.1:9002]}
geoip: {mmdbFile: /var/lib/GeoIP/GeoLite2-Country.mmdb, pollInterval: 1m}
rules:
  - {name: dach, match: {country: [DE, AT, CH]}, cohort: canary}
  - {match: {continent: [OC]}, cohort: canary}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.ProxyConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GeoIP.MMDBFile != "/var/lib/GeoIP/GeoLite2-Country.mmdb" || cfg.GeoIP.PollInterval != time.Minute ||
		len(cfg.Rules) != 2 || strings.Join(cfg.Rules[0].Match.Country, ",") != "DE,AT,CH" || cfg.Rules[1].Match.Continent[0] != "OC" {
		t.Fatalf("parsed %+v", cfg)
	}
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
