package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// AdminConfig configures the admin API handler.
type AdminConfig struct {
	// Token is the bearer token every call must carry ("Authorization: Bearer <token>").
	Token string
	// NoAuth serves the API without a token. Only for a loopback listener in development;
	// the command refuses it elsewhere. Without a token the Host header must also name the
	// listener (see guardAdmin), or a DNS-rebound web page could drive the API.
	NoAuth bool
}

// ErrNoAdminToken: the admin API was asked for without a token and without NoAuth.
var ErrNoAdminToken = errors.New("admin API needs a token")

// AdminHandler serves the admin API (see README.md):
//
//	GET  /v1/state                  routing table, back-offs, counters
//	GET  /v1/split                  {"stablePercent":95,"baselinePercent":2.5,"canaryPercent":2.5}
//	PUT  /v1/split                  {"canaryPercent":2.5,"baselinePercent":2.5}; stable gets the rest
//	PUT  /v1/upstreams/{cohort}     {"upstreams":["http://127.0.0.1:9002"]}
//	POST /v1/rollback               all traffic to stable, canary and baseline removed
//	POST /v1/promote                canary's upstreams become stable's
//	GET  /v1/requests?since=&until= per-request samples (RFC 3339 times)
//	GET  /metrics                   Prometheus metrics
func (p *Proxy) AdminHandler(cfg AdminConfig) (http.Handler, error) {
	if cfg.Token == "" && !cfg.NoAuth {
		return nil, ErrNoAdminToken
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", func(w http.ResponseWriter, r *http.Request) {
		st, err := p.State(r.Context())
		writeResult(w, st, err)
	})
	mux.HandleFunc("GET /v1/split", func(w http.ResponseWriter, r *http.Request) {
		s, err := p.Split(r.Context())
		writeResult(w, s, err)
	})
	mux.HandleFunc("PUT /v1/split", func(w http.ResponseWriter, r *http.Request) {
		var s providers.Split
		if !readJSON(w, r, &s) {
			return
		}
		if err := p.SetSplit(r.Context(), s); err != nil {
			writeResult(w, nil, err)
			return
		}
		s, err := p.Split(r.Context())
		writeResult(w, s, err)
	})
	mux.HandleFunc("PUT /v1/upstreams/{cohort}", func(w http.ResponseWriter, r *http.Request) {
		c, err := providers.ParseCohort(r.PathValue("cohort"))
		if err != nil {
			writeError(w, http.StatusNotFound, kindNotFound, err)
			return
		}
		var body struct {
			Upstreams []string `json:"upstreams"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		err = p.SetUpstreams(r.Context(), c, body.Upstreams)
		writeState(w, r, p, err)
	})
	mux.HandleFunc("POST /v1/rollback", func(w http.ResponseWriter, r *http.Request) {
		writeState(w, r, p, p.Rollback(r.Context()))
	})
	mux.HandleFunc("POST /v1/promote", func(w http.ResponseWriter, r *http.Request) {
		writeState(w, r, p, p.Promote(r.Context()))
	})
	mux.HandleFunc("GET /v1/requests", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, err1 := parseTimeParam(q.Get("since"), time.Time{})
		until, err2 := parseTimeParam(q.Get("until"), p.now().Add(time.Hour))
		if err := errors.Join(err1, err2); err != nil {
			writeError(w, http.StatusBadRequest, kindInvalid, err)
			return
		}
		reqs, err := p.Requests(r.Context(), since, until)
		if reqs == nil {
			reqs = []providers.Request{}
		}
		writeResult(w, reqs, err)
	})
	mux.Handle("GET /metrics", p.MetricsHandler())
	api := refuseSimpleWrites((&owners{now: p.now}).wrap(mux)) // owner lease (owner.go)
	if cfg.NoAuth {
		return refuseCrossSite(api, true), nil
	}
	want := sha256.Sum256([]byte(cfg.Token))
	return refuseCrossSite(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		got := sha256.Sum256([]byte(strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))))
		if !strings.HasPrefix(h, "Bearer ") || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="canaryctl-proxy-admin"`)
			writeError(w, http.StatusUnauthorized, kindUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		api.ServeHTTP(w, r)
	}), false), nil
}

func parseTimeParam(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q must be RFC 3339, e.g. 2026-01-02T15:04:05Z", s)
	}
	return t, nil
}

// Error kinds in admin API error bodies, mapped back to sentinels by Client.
const (
	kindInvalid      = "invalid_input"
	kindInvalidSplit = "invalid_split"
	kindNotFound     = "not_found"
	kindUnauthorized = "unauthorized"
	kindInternal     = "internal"
	kindForbidden    = "forbidden"
	kindMediaType    = "unsupported_media_type"
)

type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, kindInvalid, fmt.Errorf("decode request body: %w", err))
		return false
	}
	return true
}

func writeState(w http.ResponseWriter, r *http.Request, p *Proxy, err error) {
	if err != nil {
		writeResult(w, nil, err)
		return
	}
	st, err := p.State(r.Context())
	writeResult(w, st, err)
}

func writeResult(w http.ResponseWriter, v any, err error) {
	if err != nil {
		var ce *ConfigError
		switch {
		case errors.Is(err, providers.ErrInvalidSplit):
			writeError(w, http.StatusBadRequest, kindInvalidSplit, err)
		case errors.Is(err, providers.ErrNotFound):
			writeError(w, http.StatusConflict, kindNotFound, err)
		case errors.As(err, &ce):
			writeError(w, http.StatusBadRequest, kindInvalid, err)
		default:
			writeError(w, http.StatusInternalServerError, kindInternal, err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, kind string, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: err.Error(), Kind: kind})
}
