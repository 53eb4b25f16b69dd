package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"golang.org/x/text/language"
)

// GeoIPConfig names the MaxMind DB (.mmdb) file that country and continent matches look client
// IPs up in: a GeoIP2/GeoLite2 Country or City database, or DB-IP's country/city lite files, which
// share the layout (country.iso_code, continent.code). The file is read into memory and checked
// every PollInterval; when its size or modification time changes it is loaded again and swapped
// in atomically. A new file that does not load or verify is logged and the old one stays.
type GeoIPConfig struct {
	MMDBFile string `yaml:"mmdbFile" json:"mmdbFile,omitempty"`
	// PollInterval is how often the file's size and modification time are checked (default 30 s).
	PollInterval time.Duration `yaml:"pollInterval" json:"pollInterval,omitempty"`
}

// DefaultGeoIPPollInterval is how often the .mmdb file is checked for changes by default.
const DefaultGeoIPPollInterval = 30 * time.Second

// ErrNoGeoIP: a country or continent match without a geoip database configured.
var ErrNoGeoIP = errors.New("country and continent matches need geoip.mmdbFile (a MaxMind or DB-IP .mmdb country or city database)")

// continents are the continent codes GeoIP2 and DB-IP databases use.
var continents = map[string]bool{"AF": true, "AN": true, "AS": true, "EU": true, "NA": true, "OC": true, "SA": true}

// parseCountry validates an ISO 3166-1 alpha-2 country code (case-insensitive) and returns it in
// upper case, as the databases store it. Deprecated or non-ISO aliases are refused with the
// code to use instead (UK → GB), since the database never holds them and the rule would never match.
func parseCountry(s string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if len(u) != 2 || u[0] < 'A' || u[0] > 'Z' || u[1] < 'A' || u[1] > 'Z' {
		return "", fmt.Errorf("%q is not an ISO 3166-1 alpha-2 country code such as DE or US", s)
	}
	r, err := language.ParseRegion(u)
	if err != nil || !r.IsCountry() {
		return "", fmt.Errorf("%q is not an assigned ISO 3166-1 alpha-2 country code (e.g. DE, AT, US)", s)
	}
	if c := r.Canonicalize().String(); c != u {
		return "", fmt.Errorf("%q is not the ISO 3166-1 code the databases use: write %s", s, c)
	}
	return u, nil
}

func parseContinent(s string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if !continents[u] {
		return "", fmt.Errorf("%q is not a continent code (valid: AF, AN, AS, EU, NA, OC, SA)", s)
	}
	return u, nil
}

// geoCodes is what a match needs from a database record.
type geoCodes struct {
	country, continent string
}

// geoRecord is decoded from a record: the country where the IP is, else the country it is
// registered in (MaxMind leaves country out for some anycast and satellite networks).
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
}

// maxCachedRecords bounds the per-database cache of decoded records (a country database has a
// few hundred distinct records; a city database has millions, and the cache then holds the first).
const maxCachedRecords = 8192

// geoData is one loaded database.
type geoData struct {
	r       *maxminddb.Reader
	size    int64
	modTime time.Time
	cache   sync.Map // record offset (uintptr) → geoCodes
	cached  atomic.Int64
}

func (d *geoData) lookup(ip netip.Addr) (geoCodes, bool) {
	res := d.r.Lookup(ip)
	if !res.Found() {
		return geoCodes{}, false
	}
	off := res.Offset()
	if v, ok := d.cache.Load(off); ok {
		return v.(geoCodes), true
	}
	var rec geoRecord
	if err := res.Decode(&rec); err != nil {
		return geoCodes{}, false
	}
	g := geoCodes{country: rec.Country.ISOCode, continent: rec.Continent.Code}
	if g.country == "" {
		g.country = rec.RegisteredCountry.ISOCode
	}
	if d.cached.Load() < maxCachedRecords {
		if _, loaded := d.cache.LoadOrStore(off, g); !loaded {
			d.cached.Add(1)
		}
	}
	return g, true
}

// geoDB is the current database of a proxy and the poller that reloads it.
type geoDB struct {
	path     string
	log      *slog.Logger
	cur      atomic.Pointer[geoData]
	mu       sync.Mutex // serialises check
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// loadGeo reads and verifies the database at path. The whole file is read into memory rather
// than memory-mapped, so a file rewritten in place can never change under a running lookup.
func loadGeo(path string) (*geoData, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: stat %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: read %s: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("geoip: open %s: %w", path, err)
	}
	// Not r.Verify: it checks the whole file against the spec's every letter (it refuses a
	// database without a description, for one) and reads every record of a city database. A cut-off
	// download fails OpenBytes already (the metadata is at the end); a lookup proves the records
	// decode.
	var probe geoRecord
	if res := r.Lookup(netip.MustParseAddr("1.1.1.1")); res.Err() != nil || res.Decode(&probe) != nil {
		return nil, fmt.Errorf("geoip: %s: records do not decode as a country or city database", path)
	}
	return &geoData{r: r, size: fi.Size(), modTime: fi.ModTime()}, nil
}

// newGeoDB loads the database (an error is a config error: nothing is served without it) and
// starts the poller, which Close stops.
func newGeoDB(cfg GeoIPConfig, log *slog.Logger) (*geoDB, error) {
	d, err := loadGeo(cfg.MMDBFile)
	if err != nil {
		return nil, &ConfigError{Field: "geoip.mmdbFile", Err: err}
	}
	g := &geoDB{path: cfg.MMDBFile, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	g.cur.Store(d)
	log.Info("geoip database loaded", "file", g.path, "type", d.r.Metadata.DatabaseType,
		"built", d.r.Metadata.BuildTime().UTC().Format(time.RFC3339))
	every := cfg.PollInterval
	if every <= 0 {
		every = DefaultGeoIPPollInterval
	}
	go g.poll(every)
	return g, nil
}

func (g *geoDB) poll(every time.Duration) {
	defer close(g.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.check()
		}
	}
}

// check reloads the file if its size or modification time changed. A file that cannot be read,
// opened or verified keeps the old database (and is tried again once it changes again).
func (g *geoDB) check() (reloaded bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.cur.Load()
	fi, err := os.Stat(g.path)
	if err != nil {
		g.log.Error("geoip database unreadable; keeping the loaded one", "file", g.path, "err", err)
		return false, fmt.Errorf("geoip: stat %s: %w", g.path, err)
	}
	if fi.Size() == old.size && fi.ModTime().Equal(old.modTime) {
		return false, nil
	}
	d, err := loadGeo(g.path)
	if err != nil {
		g.log.Error("geoip database changed but does not load; keeping the loaded one", "file", g.path, "err", err)
		// Remember the bad file's stamp so it is not re-read every poll; a later change retries.
		g.cur.Store(&geoData{r: old.r, size: fi.Size(), modTime: fi.ModTime()})
		return false, err
	}
	g.cur.Store(d)
	g.log.Info("geoip database reloaded", "file", g.path, "type", d.r.Metadata.DatabaseType,
		"built", d.r.Metadata.BuildTime().UTC().Format(time.RFC3339))
	return true, nil
}

func (g *geoDB) close() {
	g.stopOnce.Do(func() {
		close(g.stop)
		<-g.done
	})
}

func (g *geoDB) lookup(ip netip.Addr) (geoCodes, bool) { return g.cur.Load().lookup(ip) }

// compileGeo validates the codes of a country or continent match into c.equals.
func compileGeo(c *matcher, m Match, field string) (*matcher, error) {
	name, list, parse := "country", m.Country, parseCountry
	if c.kind == 'k' {
		name, list, parse = "continent", m.Continent, parseContinent
	}
	if len(m.Equals) > 0 || m.Regex != "" {
		return nil, configErrorf(field, "%s takes no equals or regex: list the codes in %s", name, name)
	}
	for i, s := range list {
		code, err := parse(s)
		if err != nil {
			return nil, configErrorf(fmt.Sprintf("%s.%s[%d]", field, name, i), "%v", err)
		}
		c.equals = append(c.equals, code)
	}
	return c, nil
}

// usesGeo reports whether a compiled match needs the GeoIP database.
func (m *matcher) usesGeo() bool { return m.kind == 'g' || m.kind == 'k' }

// checkGeo refuses country and continent matches without a database, naming the first one.
func (p *Proxy) checkGeo(cfg GeoIPConfig) error {
	if cfg.PollInterval < 0 {
		return configErrorf("geoip.pollInterval", "%s must not be negative", cfg.PollInterval)
	}
	if cfg.MMDBFile != "" {
		return nil
	}
	for i, r := range p.rules {
		if r.m.usesGeo() {
			return &ConfigError{Field: fmt.Sprintf("rules[%d].match.%s", i, r.m.geoName()), Err: ErrNoGeoIP}
		}
	}
	for i, m := range p.deny {
		if m.usesGeo() {
			return &ConfigError{Field: fmt.Sprintf("deny[%d].%s", i, m.geoName()), Err: ErrNoGeoIP}
		}
	}
	for i, m := range p.allow {
		if m.usesGeo() {
			return &ConfigError{Field: fmt.Sprintf("allow[%d].%s", i, m.geoName()), Err: ErrNoGeoIP}
		}
	}
	return nil
}

func (m *matcher) geoName() string {
	if m.kind == 'k' {
		return "continent"
	}
	return "country"
}
