package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// OwnerTokenHeader carries the owner lease's token on every write of a rollout that holds the lease.
const OwnerTokenHeader = "Canaryctl-Owner-Token"

// Error kinds of ownership answers (409).
const (
	kindOwned     = "owned"
	kindLeaseLost = "lease_lost"
)

// maxLeaseTTL bounds a lease: a runner that dies holds the service at most this long.
const maxLeaseTTL = 10 * time.Minute

// owners keeps the admin API's owner lease (one per proxy: a proxy routes one service) and refuses
// writes from anyone else while it is live:
//
//	GET  /v1/owner          {"owner": lease without token, or null}
//	POST /v1/owner/claim    {"service","runId","holder":{host,pid,user},"ttlMs","resume","force"} -> lease with token
//	POST /v1/owner/renew    {"token","ttlMs"} -> lease; 409 lease_lost once expired or taken over
//	POST /v1/owner/release  {"token"}
//
// Every other write (PUT, POST, DELETE) must carry the live lease's token in Canaryctl-Owner-Token
// while a lease is live; a write with an outdated token is refused even after the lease expired (the
// runner that was paused past its lease must not act), a write without a token only while no lease is
// live (manual use of the admin API).
type owners struct {
	mu  sync.Mutex
	cur *providers.Lease
	now func() time.Time
}

type claimBody struct {
	Service string           `json:"service"`
	RunID   string           `json:"runId"`
	Holder  providers.Holder `json:"holder"`
	TTLMs   int64            `json:"ttlMs"`
	Resume  bool             `json:"resume,omitempty"`
	Force   bool             `json:"force,omitempty"`
}

type tokenBody struct {
	Token string `json:"token"`
	TTLMs int64  `json:"ttlMs,omitempty"`
}

type ownerAnswer struct {
	Owner *providers.Lease `json:"owner"`
}

// ownedBody is a 409 answer: the error and the current owner (without its token).
type ownedBody struct {
	Error   string           `json:"error"`
	Kind    string           `json:"kind"`
	Owner   *providers.Lease `json:"owner,omitempty"`
	Expired bool             `json:"expired,omitempty"`
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ttlOf(ms int64) (time.Duration, error) {
	d := time.Duration(ms) * time.Millisecond
	if d < time.Second || d > maxLeaseTTL {
		return 0, fmt.Errorf("ttlMs %d must be between 1000 and %d", ms, maxLeaseTTL.Milliseconds())
	}
	return d, nil
}

// wrap serves the owner endpoints and guards every other write of next.
func (o *owners) wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/owner", func(w http.ResponseWriter, _ *http.Request) {
		o.mu.Lock()
		var a ownerAnswer
		if o.cur != nil {
			l := *o.cur
			l.Token = ""
			a.Owner = &l
		}
		o.mu.Unlock()
		writeResult(w, a, nil)
	})
	mux.HandleFunc("POST /v1/owner/claim", func(w http.ResponseWriter, r *http.Request) {
		var b claimBody
		if !readJSON(w, r, &b) {
			return
		}
		ttl, err := ttlOf(b.TTLMs)
		if err == nil && (b.RunID == "" || b.Service == "") {
			err = errors.New("runId and service are required")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, kindInvalid, err)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		now := o.now()
		c := providers.Claim{Service: b.Service, RunID: b.RunID, Holder: b.Holder, Resume: b.Resume, Force: b.Force}
		if err := c.Decide(o.cur, now); err != nil {
			var oe *providers.OwnedError
			errors.As(err, &oe)
			writeOwned(w, kindOwned, err, &oe.Owner, oe.Expired)
			return
		}
		o.cur = &providers.Lease{Service: b.Service, RunID: b.RunID, Holder: b.Holder, Expires: now.Add(ttl), Token: newToken()}
		writeResult(w, o.cur, nil)
	})
	mux.HandleFunc("POST /v1/owner/renew", func(w http.ResponseWriter, r *http.Request) {
		var b tokenBody
		if !readJSON(w, r, &b) {
			return
		}
		ttl, err := ttlOf(b.TTLMs)
		if err != nil {
			writeError(w, http.StatusBadRequest, kindInvalid, err)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		now := o.now()
		if o.cur == nil || o.cur.Token != b.Token || !now.Before(o.cur.Expires) {
			o.refuse(w, now)
			return
		}
		o.cur.Expires = now.Add(ttl)
		writeResult(w, o.cur, nil)
	})
	mux.HandleFunc("POST /v1/owner/release", func(w http.ResponseWriter, r *http.Request) {
		var b tokenBody
		if !readJSON(w, r, &b) {
			return
		}
		o.mu.Lock()
		if o.cur != nil && o.cur.Token == b.Token {
			o.cur = nil
		}
		o.mu.Unlock()
		writeResult(w, ownerAnswer{}, nil)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/owner" || strings.HasPrefix(r.URL.Path, "/v1/owner/") {
			mux.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !o.mayWrite(w, r.Header.Get(OwnerTokenHeader)) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mayWrite checks a write's token against the lease; it answers 409 and returns false when refused.
func (o *owners) mayWrite(w http.ResponseWriter, token string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	switch {
	case o.cur != nil && token == o.cur.Token && now.Before(o.cur.Expires):
		return true
	case token == "" && (o.cur == nil || !now.Before(o.cur.Expires)):
		return true
	}
	if token == "" {
		l := *o.cur
		l.Token = ""
		writeOwned(w, kindOwned, &providers.OwnedError{Owner: l}, &l, false)
		return false
	}
	o.refuse(w, now)
	return false
}

// refuse answers 409: lease_lost to a holder whose token is outdated, owned with the holder otherwise.
// Called with o.mu held.
func (o *owners) refuse(w http.ResponseWriter, now time.Time) {
	if o.cur == nil {
		writeOwned(w, kindLeaseLost, errors.New("ownership lease lost: no rollout owns the service now"), nil, false)
		return
	}
	l := *o.cur
	l.Token = ""
	expired := !now.Before(l.Expires)
	err := fmt.Errorf("ownership lease lost: the service is owned by run %s held by %s (lease until %s)", l.RunID, l.Holder, l.Expires.UTC().Format(time.RFC3339))
	writeOwned(w, kindLeaseLost, err, &l, expired)
}

func writeOwned(w http.ResponseWriter, kind string, err error, owner *providers.Lease, expired bool) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	_ = json.NewEncoder(w).Encode(ownedBody{Error: err.Error(), Kind: kind, Owner: owner, Expired: expired})
}
