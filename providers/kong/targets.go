package kong

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	gokong "github.com/kong/go-kong/kong"

	"github.com/canaryctl/canaryctl/providers"
)

// state is what the Router learnt from Kong and what it created.
type state struct {
	serviceID   string
	serviceHost string
	servicePort int
	servicePath string

	upstreamID string
	upstream   string
	stable     []stableTarget                // stable targets with their original weights
	cohorts    map[providers.Cohort][]string // addresses of baseline and canary

	hashOrig map[string]any // hash mode: the upstream's settings before the rollout
	hashSet  bool

	greenID      string // bluegreen
	greenCreated bool

	canaryHost string // canary-plugin
	canaryPort int
	pluginID   string

	logPluginID string
}

type stableTarget struct {
	addr   string
	weight int // original weight (> 0)
}

// target is a target as read back from Kong.
type target struct {
	ID     string
	Addr   string
	Weight int
	Tags   []string
}

func fromKong(t *gokong.Target) target {
	out := target{}
	if t.ID != nil {
		out.ID = *t.ID
	}
	if t.Target != nil {
		out.Addr = *t.Target
	}
	if t.Weight != nil {
		out.Weight = *t.Weight
	}
	for _, s := range t.Tags {
		if s != nil {
			out.Tags = append(out.Tags, *s)
		}
	}
	return out
}

// cohortOf returns the cohort a target of this rollout was tagged with.
func (r *Router) cohortOf(t target) (providers.Cohort, bool) {
	if !slices.Contains(t.Tags, r.rolloutTag()) {
		return "", false
	}
	for _, tag := range t.Tags {
		if c, ok := strings.CutPrefix(tag, "cohort:"); ok {
			return providers.Cohort(c), true
		}
	}
	return "", false
}

// foreignRollout returns the rollout tag of a target that another canaryctl rollout owns.
func (r *Router) foreignRollout(t target) string {
	if !slices.Contains(t.Tags, TagCanaryctl) || slices.Contains(t.Tags, r.rolloutTag()) {
		return ""
	}
	for _, tag := range t.Tags {
		if strings.HasPrefix(tag, "rollout:") {
			return tag
		}
	}
	return "rollout:?"
}

// Preflight resolves the Service and Upstream and checks the token, before any traffic moves.
func (r *Router) Preflight(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resolveLocked(ctx)
}

func (r *Router) ws() string {
	if r.cfg.Workspace == "" {
		return "default"
	}
	return r.cfg.Workspace
}

// findService reads the Kong Service into st.
func (r *Router) findService(ctx context.Context, st *state) error {
	svc, err := r.client.Services.Get(ctx, ptr(r.cfg.Service))
	if err != nil {
		if errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("kong: find service %q: %w: no such Kong Service in workspace %q at %s; check gateway.kong.service (GET /services/%s answered 404)",
				r.cfg.Service, providers.ErrNotFound, r.ws(), r.cfg.AdminURL, r.cfg.Service)
		}
		return fmt.Errorf("kong: find service %q: %w", r.cfg.Service, err)
	}
	st.serviceID = deref(svc.ID)
	st.serviceHost = deref(svc.Host)
	if svc.Port != nil {
		st.servicePort = *svc.Port
	}
	st.servicePath = deref(svc.Path)
	return nil
}

// findUpstream reads the upstream the rollout splits.
func (r *Router) findUpstream(ctx context.Context, name string) (*gokong.Upstream, error) {
	up, err := r.client.Upstreams.Get(ctx, ptr(name))
	if err == nil {
		return up, nil
	}
	if errors.Is(err, providers.ErrNotFound) {
		if r.cfg.Service != "" {
			return nil, fmt.Errorf("kong: find upstream of service %q: %w: the service sends traffic to host %q, which is not a Kong Upstream; create an upstream named %q with the current instances as targets (canaryctl splits traffic between upstream targets), or use mode canary-plugin",
				r.cfg.Service, providers.ErrNotFound, name, name)
		}
		return nil, fmt.Errorf("kong: find upstream %q: %w: no such Kong Upstream in workspace %q; check gateway.kong.upstream", name, providers.ErrNotFound, r.ws())
	}
	return nil, fmt.Errorf("kong: find upstream %q: %w", name, err)
}

// adoptTargets takes the upstream's targets of this rollout into st (a resumed rollout) and
// returns the others with weight 0; a target of another rollout is an error.
func (r *Router) adoptTargets(st *state, ts []target) (idle []string, err error) {
	for _, t := range ts {
		if other := r.foreignRollout(t); other != "" {
			return nil, fmt.Errorf("kong: upstream %q has target %s of another canaryctl rollout (%s); finish or roll back that rollout first, or delete its targets", st.upstream, t.Addr, other)
		}
		if c, ok := r.cohortOf(t); ok {
			// resuming this rollout: adopt what it created
			st.cohorts[c] = append(st.cohorts[c], t.Addr)
			continue
		}
		if t.Weight == 0 {
			idle = append(idle, t.Addr)
		}
	}
	return idle, nil
}

func (r *Router) resolveLocked(ctx context.Context) error {
	if r.resolved {
		return nil
	}
	if err := r.checkNode(ctx); err != nil {
		return err
	}
	st := state{cohorts: map[providers.Cohort][]string{}}
	upName := r.cfg.Upstream
	if r.cfg.Service != "" {
		if err := r.findService(ctx, &st); err != nil {
			return err
		}
		upName = st.serviceHost
	}
	if modeTypes[r.cfg.Mode].stableByRollout { // no upstream: the Service's host is the stable cohort
		if !r.recorded {
			r.orig = Original{Mode: r.cfg.Mode, ServiceHost: st.serviceHost, ServicePort: st.servicePort, ServicePath: st.servicePath}
		}
		r.st, r.resolved = st, true
		r.applyOriginalLocked()
		return nil
	}
	up, err := r.findUpstream(ctx, upName)
	if err != nil {
		return err
	}
	st.upstreamID, st.upstream = deref(up.ID), deref(up.Name)
	st.hashOrig = map[string]any{
		"algorithm":      orNil(up.Algorithm),
		"hash_on":        orNil(up.HashOn),
		"hash_on_header": orNil(up.HashOnHeader),
		"hash_on_cookie": orNil(up.HashOnCookie),
	}
	ts, err := r.listTargets(ctx, st.upstreamID)
	if err != nil {
		return fmt.Errorf("kong: list targets of upstream %q: %w", st.upstream, err)
	}
	ours := func(t target) bool { _, ok := r.cohortOf(t); return ok }
	idle, err := r.adoptTargets(&st, ts)
	if err != nil {
		return err
	}
	r.st = st
	if !r.recorded {
		r.orig = Original{Mode: r.cfg.Mode, Upstream: st.upstream, UpstreamID: st.upstreamID, Targets: originalTargets(ts, ours),
			Balancing: st.hashOrig, ServiceHost: st.serviceHost, ServicePort: st.servicePort, ServicePath: st.servicePath, Partial: len(st.cohorts) > 0}
	} else if err := r.checkSameUpstream(); err != nil {
		return err
	}
	r.applyOriginalLocked()
	st = r.st
	if len(st.stable) == 0 && len(st.cohorts) > 0 {
		// Resuming a rollout whose last step (50/50) or promotion moved all weight off stable,
		// without a recorded original (SetOriginal replaces this guess): the weight-0 targets are
		// taken as the stable ones, at Kong's default weight 100 each; a target an operator had
		// drained cannot be told apart here.
		r.log.Warn("no recorded original state: taking the upstream's weight-0 targets as stable at weight 100", "targets", idle)
		for _, a := range idle {
			st.stable = append(st.stable, stableTarget{addr: a, weight: 100})
		}
	}
	if len(st.stable) == 0 && r.cfg.Mode != ModeBlueGreen {
		return fmt.Errorf("kong: upstream %q has no target with weight > 0: add the stable instances as targets first (canaryctl keeps them as the stable cohort)", st.upstream)
	}
	if r.cfg.Log != nil {
		addrs := make([]string, len(st.stable))
		for i, s := range st.stable {
			addrs[i] = s.addr
		}
		if err := r.cfg.Log.SetCohort(providers.Stable, addrs); err != nil {
			return fmt.Errorf("kong: register stable targets with the kong-log receiver: %w", err)
		}
	}
	r.st, r.resolved = st, true
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func (r *Router) listTargets(ctx context.Context, upstreamID string) ([]target, error) {
	ts, err := r.client.Targets.ListAll(ctx, ptr(upstreamID))
	if err != nil {
		return nil, err
	}
	out := make([]target, 0, len(ts))
	for _, t := range ts {
		out = append(out, fromKong(t))
	}
	return out, nil
}

// NormalizeAddress turns an instance address (http://host:port, host:port or host) into a Kong
// target "host:port" (URLs without a port get their scheme's port; bare hosts Kong's 8000).
func NormalizeAddress(a string) (string, error) {
	s := strings.TrimSpace(a)
	port := ""
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("%q is not an address; use host:port or http://host:port", a)
		}
		if u.Path != "" && u.Path != "/" {
			return "", fmt.Errorf("%q has a path; a Kong target is host:port (set the path on the Service)", a)
		}
		s = u.Host
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return "", fmt.Errorf("%q: use an http or https URL, or host:port", a)
		}
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		host, p = strings.Trim(s, "[]"), port
		if p == "" {
			p = "8000"
		}
	}
	n, err := strconv.Atoi(p)
	if host == "" || err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q is not host:port with a port in 1..65535", a)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else if !hostChars(host) {
		return "", fmt.Errorf("%q: %q is neither an IP address nor a host name", a, host)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(n)), nil
}

// hostChars accepts what may be a DNS name: letters, digits, '-', '_' and non-empty dot-separated
// labels (Kong checks the rest, e.g. label lengths).
func hostChars(h string) bool {
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

// SetUpstreams registers the addresses of a cohort. Baseline and canary become targets of the
// upstream with weight 0, tagged canaryctl, cohort:<c>, rollout:<id>; stable addresses, if given,
// must already be targets.
func (r *Router) SetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	if !c.Valid() {
		return fmt.Errorf("kong: set upstreams: unknown cohort %q", c)
	}
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		n, err := NormalizeAddress(a)
		if err != nil {
			return fmt.Errorf("kong: set %s upstreams: %w", c, err)
		}
		if !slices.Contains(norm, n) {
			norm = append(norm, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.resolveLocked(ctx); err != nil {
		return err
	}
	if err := r.mode.setUpstreams(ctx, c, norm); err != nil {
		return err
	}
	// Stable's targets are learnt from the upstream when it is resolved; in canary-plugin mode the
	// Service may point at a plain host, so stable is what the rollout says it is.
	if r.cfg.Log != nil && (c != providers.Stable || modeTypes[r.cfg.Mode].stableByRollout) {
		if err := r.cfg.Log.SetCohort(c, norm); err != nil {
			return fmt.Errorf("kong: register %s targets with the kong-log receiver: %w", c, err)
		}
	}
	if r.cfg.LogEndpoint != "" && c != providers.Stable {
		if err := r.enableLogLocked(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *Router) tSetUpstreams(ctx context.Context, c providers.Cohort, addrs []string) error {
	st := &r.st
	if c == providers.Stable {
		return r.checkStable(addrs)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("kong: set %s upstreams: no address given", c)
	}
	if err := r.checkOwnAddrs(c, addrs); err != nil {
		return err
	}
	if r.cfg.Mode == ModeHash && !st.hashSet {
		if err := r.setHash(ctx); err != nil {
			return err
		}
	}
	ts, err := r.listTargets(ctx, st.upstreamID)
	if err != nil {
		return fmt.Errorf("kong: list targets of upstream %q: %w", st.upstream, err)
	}
	changes, err := r.targetChanges(c, addrs, ts)
	if err != nil {
		return err
	}
	if err := r.apply(ctx, changes); err != nil {
		return fmt.Errorf("kong: add %s targets %s to upstream %q: %w", c, strings.Join(addrs, ", "), st.upstream, err)
	}
	st.cohorts[c] = addrs
	ts, err = r.listTargets(ctx, st.upstreamID)
	if err != nil {
		return fmt.Errorf("kong: read back targets of upstream %q: %w", st.upstream, err)
	}
	if err := r.checkAdded(c, addrs, changes, ts); err != nil {
		return err
	}
	r.log.Info("kong targets added", "cohort", c, "upstream", st.upstream, "targets", addrs)
	return nil
}

// checkStable: stable's addresses must be targets of the upstream already.
func (r *Router) checkStable(addrs []string) error {
	st := &r.st
	for _, a := range addrs {
		if !slices.ContainsFunc(st.stable, func(s stableTarget) bool { return s.addr == a }) {
			return fmt.Errorf("kong: stable address %s is not a target with weight > 0 of upstream %q (stable targets: %s); fix deploy.stable or the upstream", a, st.upstream, stableList(st.stable))
		}
	}
	return nil
}

// checkOwnAddrs: a cohort's addresses are neither stable's nor the other cohort's.
func (r *Router) checkOwnAddrs(c providers.Cohort, addrs []string) error {
	st := &r.st
	other := providers.Canary
	if c == providers.Canary {
		other = providers.Baseline
	}
	for _, a := range addrs {
		if slices.ContainsFunc(st.stable, func(s stableTarget) bool { return s.addr == a }) {
			return fmt.Errorf("kong: %s address %s is a stable target of upstream %q; give the %s its own instances", c, a, st.upstream, c)
		}
		if slices.Contains(st.cohorts[other], a) {
			return fmt.Errorf("kong: %s address %s is already the %s's; canary and baseline need different instances", c, a, other)
		}
	}
	return nil
}

// targetChanges are the targets to create (weight 0) and delete so that the cohort's targets are
// addrs; an address another cohort or another rollout holds is an error.
func (r *Router) targetChanges(c providers.Cohort, addrs []string, ts []target) ([]change, error) {
	st := &r.st
	var changes []change
	have := map[string]target{}
	for _, t := range ts {
		have[t.Addr] = t
	}
	for _, a := range addrs {
		t, ok := have[a]
		switch {
		case !ok:
			changes = append(changes, change{op: opCreate, addr: a, weight: 0, tags: r.tags(c)})
		case slices.Contains(t.Tags, r.rolloutTag()):
			if tc, _ := r.cohortOf(t); tc != c {
				return nil, fmt.Errorf("kong: %s address %s is tagged cohort:%s by this rollout; canary and baseline need different instances", c, a, tc)
			}
			// Registered by an earlier run of this rollout: it keeps its weight (the step's split
			// is set again next); zeroing it would take the share of a 50/50 step to nothing.
		case c == providers.Canary && len(t.Tags) == 0 && r.recorded && !r.original(a):
			// Not there before the rollout (the recorded original says so) and untagged: the
			// canary target a promotion of this rollout untagged before it was interrupted.
		default:
			return nil, fmt.Errorf("kong: %s address %s is already a target of upstream %q that this rollout did not create (tags %v); give the %s its own address or delete that target", c, a, st.upstream, t.Tags, c)
		}
	}
	for _, old := range st.cohorts[c] {
		if !slices.Contains(addrs, old) {
			if t, ok := have[old]; ok {
				changes = append(changes, change{op: opDelete, addr: old, id: t.ID})
			}
		}
	}
	return changes, nil
}

// checkAdded reads the created targets back: there, with weight 0.
func (r *Router) checkAdded(c providers.Cohort, addrs []string, changes []change, ts []target) error {
	st := &r.st
	for _, ch := range changes {
		if ch.op == opCreate && !slices.ContainsFunc(ts, func(t target) bool { return t.Addr == ch.addr && t.Weight == 0 }) {
			return fmt.Errorf("kong: read back targets of upstream %q: %s target %s is missing or has a weight other than 0", st.upstream, c, ch.addr)
		}
	}
	for _, a := range addrs {
		if !slices.ContainsFunc(ts, func(t target) bool { return t.Addr == a }) {
			return fmt.Errorf("kong: read back targets of upstream %q: %s target %s is missing", st.upstream, c, a)
		}
	}
	return nil
}

func stableList(s []stableTarget) string {
	out := make([]string, len(s))
	for i, t := range s {
		out[i] = t.addr
	}
	return strings.Join(out, ", ")
}

// setHash switches the upstream to consistent hashing on the configured key (hash mode).
func (r *Router) setHash(ctx context.Context) error {
	body := map[string]any{"algorithm": "consistent-hashing", "hash_on": r.cfg.HashOn}
	switch r.cfg.HashOn {
	case "header":
		body["hash_on_header"] = r.cfg.HashOnHeader
	case "cookie":
		body["hash_on_cookie"] = r.cfg.HashOnCookie
	}
	if err := r.call(ctx, http.MethodPatch, "/upstreams/"+r.st.upstreamID, nil, body, nil); err != nil {
		return fmt.Errorf("kong: set hash_on %s on upstream %q: %w", r.cfg.HashOn, r.st.upstream, err)
	}
	r.st.hashSet = true
	return nil
}

// restoreHash puts the upstream's recorded balancing back (hash mode); it runs whether or not this
// process changed it, since a resumed run cannot know.
func (r *Router) restoreHash(ctx context.Context) error {
	if r.cfg.Mode != ModeHash || r.st.hashOrig == nil {
		return nil
	}
	body := map[string]any{}
	for k, v := range r.st.hashOrig {
		body[k] = v
	}
	if body["algorithm"] == nil {
		body["algorithm"] = "round-robin"
	}
	if body["hash_on"] == nil {
		body["hash_on"] = "none"
	}
	if err := r.call(ctx, http.MethodPatch, "/upstreams/"+r.st.upstreamID, nil, body, nil); err != nil {
		return fmt.Errorf("kong: restore hash_on of upstream %q: %w", r.st.upstream, err)
	}
	r.st.hashSet = false
	return nil
}

// SetSplit sets the traffic shares as exact integer target weights, reads them back and waits for
// Kong to propagate the change.
func (r *Router) SetSplit(ctx context.Context, s providers.Split) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("kong: set split: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.resolveLocked(ctx); err != nil {
		return err
	}
	return r.mode.setSplit(ctx, s)
}

func (r *Router) tSetSplit(ctx context.Context, s providers.Split) error {
	st := &r.st
	nc, nb := len(st.cohorts[providers.Canary]), len(st.cohorts[providers.Baseline])
	if s.Canary > 0 && nc == 0 {
		return fmt.Errorf("kong: set split %s: the canary has no targets yet (SetUpstreams canary first)", s)
	}
	if s.Baseline > 0 && nb == 0 {
		return fmt.Errorf("kong: set split %s: the baseline has no targets yet (SetUpstreams baseline first)", s)
	}
	orig := make([]int, len(st.stable))
	for i, t := range st.stable {
		orig[i] = t.weight
	}
	w := splitWeights(s, orig, nb, nc)
	if s.Canary == 0 && s.Baseline == 0 {
		// all on stable: its own weights, as they were (no rescaling of the user's targets)
		w = weights{stable: orig, exact: true}
	}
	if !w.exact {
		r.log.Warn("kong target weights cannot express the split exactly; using the closest weights", "split", s.String())
	}
	want := map[string]int{}
	for i, t := range st.stable {
		want[t.addr] = w.stable[i]
	}
	for _, a := range st.cohorts[providers.Canary] {
		want[a] = w.canary
	}
	for _, a := range st.cohorts[providers.Baseline] {
		want[a] = w.baseline
	}
	if err := r.setWeights(ctx, want); err != nil {
		return fmt.Errorf("kong: set split %s on upstream %q: %w", s, st.upstream, err)
	}
	r.log.Info("kong split set", "split", s.String(), "upstream", st.upstream, "weights", want)
	return nil
}

// setWeights PATCHes targets to the wanted weights, raising weights before lowering any, so the
// upstream never loses all capacity and no cohort ever gets more than the larger of its old and
// new share; then it reads the targets back.
func (r *Router) setWeights(ctx context.Context, want map[string]int) error {
	ts, err := r.listTargets(ctx, r.st.upstreamID)
	if err != nil {
		return fmt.Errorf("list targets: %w", err)
	}
	var up, down []change
	have := map[string]target{}
	for _, t := range ts {
		have[t.Addr] = t
	}
	addrs := make([]string, 0, len(want))
	for a := range want {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		t, ok := have[a]
		if !ok {
			return fmt.Errorf("target %s is gone from the upstream (deleted outside canaryctl?)", a)
		}
		switch {
		case want[a] > t.Weight:
			up = append(up, change{op: opPatch, addr: a, id: t.ID, weight: want[a]})
		case want[a] < t.Weight:
			down = append(down, change{op: opPatch, addr: a, id: t.ID, weight: want[a]})
		}
	}
	if err := r.apply(ctx, append(up, down...)); err != nil {
		return err
	}
	return r.readBack(ctx, want, nil)
}

// readBack checks that targets have the wanted weights and that gone ones are absent.
func (r *Router) readBack(ctx context.Context, want map[string]int, gone []string) error {
	ts, err := r.listTargets(ctx, r.st.upstreamID)
	if err != nil {
		return fmt.Errorf("read back targets: %w", err)
	}
	have := map[string]int{}
	for _, t := range ts {
		have[t.Addr] = t.Weight
	}
	for a, w := range want {
		got, ok := have[a]
		if !ok {
			return fmt.Errorf("read back: target %s is missing", a)
		}
		if got != w {
			return fmt.Errorf("read back: target %s has weight %d, want %d", a, got, w)
		}
	}
	for _, a := range gone {
		if _, ok := have[a]; ok {
			return fmt.Errorf("read back: target %s is still there", a)
		}
	}
	return nil
}

// Split reads the targets back and derives the split from their weights.
func (r *Router) Split(ctx context.Context) (providers.Split, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.resolveLocked(ctx); err != nil {
		return providers.Split{}, err
	}
	return r.mode.split(ctx)
}

// tSplit derives the split from the weights of the upstream's targets.
func (r *Router) tSplit(ctx context.Context) (providers.Split, error) {
	ts, err := r.listTargets(ctx, r.st.upstreamID)
	if err != nil {
		return providers.Split{}, fmt.Errorf("kong: read targets of upstream %q: %w", r.st.upstream, err)
	}
	var total, canary, baseline int
	for _, t := range ts {
		total += t.Weight
		switch c, _ := r.cohortOf(t); c {
		case providers.Canary:
			canary += t.Weight
		case providers.Baseline:
			baseline += t.Weight
		}
	}
	if total == 0 {
		return providers.Split{}, fmt.Errorf("kong: upstream %q has no target with weight > 0: it has no capacity", r.st.upstream)
	}
	return providers.Split{Canary: roundBP(canary, total), Baseline: roundBP(baseline, total)}, nil
}

func roundBP(w, total int) int { return (w*providers.BasisPoints*2 + total) / (2 * total) }

// Rollback returns all traffic to stable: stable targets get their original weights back, then the
// canary and baseline targets are deleted (hash mode: the upstream's hashing is restored; the
// http-log plugin canaryctl added is removed).
func (r *Router) Rollback(ctx context.Context) error {
	return r.finish(ctx, router.rollback, "kong rollback done: all traffic on stable")
}

// finish runs the mode's last act of a rollout (rollback or promotion), then removes the http-log
// plugin canaryctl added.
func (r *Router) finish(ctx context.Context, act func(router, context.Context) error, done string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.resolveLocked(ctx); err != nil {
		return err
	}
	if err := act(r.mode, ctx); err != nil {
		return err
	}
	if err := r.disableLogLocked(ctx); err != nil {
		return err
	}
	r.log.Info(done)
	return nil
}

func (r *Router) tRollback(ctx context.Context) error {
	st := &r.st
	ts, err := r.listTargets(ctx, st.upstreamID)
	if errors.Is(err, providers.ErrNotFound) {
		// Not "nothing registered": the upstream this rollout changed is gone (Kong restarted
		// without its database, or the upstream was deleted and maybe created again). Nothing was
		// rolled back; the error must not read as a 404 the engine could take for success.
		return fmt.Errorf("kong: roll back upstream %q: %w: its id %s is unknown to Kong now (Kong lost its configuration, or the upstream was deleted and created again); nothing was changed: check the upstream and its targets by hand (%v)",
			st.upstream, ErrGatewayChanged, st.upstreamID, err)
	}
	if err != nil {
		return fmt.Errorf("kong: roll back upstream %q: list targets: %w", st.upstream, err)
	}
	present := 0
	for _, t := range ts {
		if slices.ContainsFunc(st.stable, func(s stableTarget) bool { return s.addr == t.Addr }) {
			present++
		}
	}
	// a promotion deleted them: created again as they were, before anything else changes
	var up, del, down []change
	want := map[string]int{}
	for _, o := range r.deletedByPromotion(ts) {
		up = append(up, change{op: opCreate, addr: o.Target, weight: o.Weight, tags: append([]string{}, o.Tags...)})
		want[o.Target] = o.Weight
		present++
	}
	if present == 0 {
		// A promotion got past deleting the old stable targets: deleting the canary now would
		// leave the upstream without capacity.
		return fmt.Errorf("kong: roll back upstream %q: the old stable targets are gone and there is no recorded original state of a promoted rollout to create them again from; the canary serves all traffic and is left in place; finish with canaryctl promote, or add the stable targets back by hand", st.upstream)
	}
	ours := func(t target) bool {
		if _, own := r.cohortOf(t); own {
			return true
		}
		// a promotion that failed after untagging the canary
		return slices.Contains(st.cohorts[providers.Canary], t.Addr) || slices.Contains(st.cohorts[providers.Baseline], t.Addr) || r.untaggedOurs(t)
	}
	var gone []string
	for _, t := range ts {
		if ours(t) {
			del = append(del, change{op: opDelete, addr: t.Addr, id: t.ID})
			gone = append(gone, t.Addr)
			continue
		}
		for _, s := range st.stable {
			if s.addr != t.Addr {
				continue
			}
			want[t.Addr] = s.weight
			switch {
			case s.weight > t.Weight:
				up = append(up, change{op: opPatch, addr: t.Addr, id: t.ID, weight: s.weight})
			case s.weight < t.Weight:
				down = append(down, change{op: opPatch, addr: t.Addr, id: t.ID, weight: s.weight})
			}
		}
	}
	changes := append(append(up, del...), down...)
	if err := r.apply(ctx, changes); err != nil {
		return fmt.Errorf("kong: roll back upstream %q (delete canary and baseline targets): %w", st.upstream, err)
	}
	if err := r.readBack(ctx, want, gone); err != nil {
		return fmt.Errorf("kong: roll back upstream %q: %w", st.upstream, err)
	}
	st.cohorts = map[providers.Cohort][]string{}
	if err := r.restoreHash(ctx); err != nil {
		return err
	}
	return r.settle(ctx, st.upstreamID, "rollback", false)
}

// Promote moves all weight to the canary, waits for the old targets to drain, then deletes the
// baseline and the old stable targets and untags the canary's, which become the new stable. The
// canary's weight is raised before any other is lowered, so the upstream never has zero capacity.
func (r *Router) Promote(ctx context.Context) error {
	return r.finish(ctx, router.promote, "kong promotion done: the canary is the new stable")
}

func (r *Router) tPromote(ctx context.Context) error {
	st := &r.st
	canary := st.cohorts[providers.Canary]
	if len(canary) == 0 {
		return fmt.Errorf("kong: promote: the canary has no targets in upstream %q", st.upstream)
	}
	r.recall.promoted = true // from here on, a rollback creates again what this deletes
	// Idempotent, so that a run killed half-way through a promotion can finish it: the old stable
	// and baseline targets that a first attempt already deleted are simply not there.
	present, err := r.listTargets(ctx, st.upstreamID)
	if err != nil {
		return fmt.Errorf("kong: promote: list targets of upstream %q: %w", st.upstream, err)
	}
	has := func(a string) bool { return slices.ContainsFunc(present, func(t target) bool { return t.Addr == a }) }
	want := map[string]int{}
	for _, a := range canary {
		want[a] = 100 // Kong's default weight
	}
	for _, s := range st.stable {
		if has(s.addr) {
			want[s.addr] = 0
		}
	}
	for _, a := range st.cohorts[providers.Baseline] {
		if has(a) {
			want[a] = 0
		}
	}
	if err := r.setWeights(ctx, want); err != nil {
		return fmt.Errorf("kong: promote: move all weight of upstream %q to the canary: %w", st.upstream, err)
	}
	if err := r.settle(ctx, st.upstreamID, "moving all weight to the canary", true); err != nil {
		return err
	}
	ts, err := r.listTargets(ctx, st.upstreamID)
	if err != nil {
		return fmt.Errorf("kong: promote: list targets of upstream %q: %w", st.upstream, err)
	}
	var changes []change
	var gone []string
	for _, t := range ts {
		c, own := r.cohortOf(t)
		isStable := slices.ContainsFunc(st.stable, func(s stableTarget) bool { return s.addr == t.Addr })
		switch {
		case !own && slices.Contains(canary, t.Addr):
			// untagged by an earlier attempt: already the new stable
		case own && c == providers.Canary:
			changes = append(changes, change{op: opPatch, addr: t.Addr, id: t.ID, weight: t.Weight, tags: []string{}})
		case own || isStable:
			changes = append(changes, change{op: opDelete, addr: t.Addr, id: t.ID})
			gone = append(gone, t.Addr)
		}
	}
	// untag first (the canary keeps its weight), then delete: capacity is never zero
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].op == opPatch && changes[j].op != opPatch })
	if err := r.apply(ctx, changes); err != nil {
		return fmt.Errorf("kong: promote: delete old stable and baseline targets of upstream %q: %w", st.upstream, err)
	}
	keep := map[string]int{}
	for _, a := range canary {
		keep[a] = 100
	}
	if err := r.readBack(ctx, keep, gone); err != nil {
		return fmt.Errorf("kong: promote upstream %q: %w", st.upstream, err)
	}
	if err := r.settle(ctx, st.upstreamID, "promotion", false); err != nil {
		return err
	}
	st.stable = nil
	for _, a := range canary {
		st.stable = append(st.stable, stableTarget{addr: a, weight: 100})
	}
	st.cohorts = map[providers.Cohort][]string{}
	return r.restoreHash(ctx)
}

// weights is the result of splitWeights.
type weights struct {
	stable   []int
	canary   int // per canary target
	baseline int // per baseline target
	exact    bool
}

// splitWeights chooses integer target weights (0..65535) that give canary and baseline exactly
// their basis points of the total and share stable's part among the stable targets in exactly
// the ratio of their original weights; every canary (baseline) target gets the same weight. The
// smallest such weights are used (e.g. 2.5%/2.5%/95% with one target each: 1, 1, 38). When no
// exact solution fits in 65535, the closest one (largest remainders over a total of 60000) is
// returned with exact=false.
func splitWeights(s providers.Split, stableOrig []int, nb, nc int) weights {
	g := 0
	for _, w := range stableOrig {
		g = gcd(g, w)
	}
	base := make([]int, len(stableOrig))
	W := 0
	for i, w := range stableOrig {
		base[i] = w / g
		W += base[i]
	}
	shares := cohortShares{base: base, W: W, C: s.Canary, B: s.Baseline, S: s.Stable(), nb: nb, nc: nc}
	if w, ok := shares.exact(); ok {
		return w
	}
	return shares.closest()
}

// cohortShares is a split to give as target weights: stable's base ratios (summing to W), the
// basis points of canary (C), baseline (B) and stable (S), and the canary and baseline targets.
type cohortShares struct {
	base       []int
	W, C, B, S int
	nb, nc     int
}

// exact returns the smallest exact weights, if they fit in 65535.
func (c cohortShares) exact() (weights, bool) {
	limit := c.W * max(c.nb, 1) * max(c.nc, 1)
	for k := 1; k <= limit && k <= 1<<20; k++ {
		if !c.divides(k) {
			continue
		}
		w := c.scaled(k)
		fits := w.canary <= maxWeight && w.baseline <= maxWeight
		for _, x := range w.stable {
			fits = fits && x <= maxWeight
		}
		return w, fits // larger k only gives larger weights
	}
	return weights{}, false
}

// divides reports whether k times every share is a whole weight per target.
func (c cohortShares) divides(k int) bool {
	if c.nc > 0 && c.C*k%c.nc != 0 || c.nc == 0 && c.C > 0 || c.nb > 0 && c.B*k%c.nb != 0 || c.nb == 0 && c.B > 0 {
		return false
	}
	for _, b := range c.base {
		if c.S*k*b%c.W != 0 {
			return false
		}
	}
	return true
}

// scaled is the weights of k times the shares, divided by their greatest common divisor.
func (c cohortShares) scaled(k int) weights {
	w := weights{stable: make([]int, len(c.base)), exact: true}
	all := 0
	for i, b := range c.base {
		w.stable[i] = c.S * k * b / c.W
		all = gcd(all, w.stable[i])
	}
	if c.nc > 0 {
		w.canary = c.C * k / c.nc
		all = gcd(all, w.canary)
	}
	if c.nb > 0 {
		w.baseline = c.B * k / c.nb
		all = gcd(all, w.baseline)
	}
	if all > 1 {
		for i := range w.stable {
			w.stable[i] /= all
		}
		w.canary /= all
		w.baseline /= all
	}
	return w
}

// closest: per-target ideal shares of a total of 60000, rounded.
func (c cohortShares) closest() weights {
	const total = 60000
	ideal := make([]float64, 0, len(c.base)+2)
	for _, b := range c.base {
		ideal = append(ideal, float64(c.S)/providers.BasisPoints*total*float64(b)/float64(c.W))
	}
	if c.nc > 0 {
		ideal = append(ideal, float64(c.C)/providers.BasisPoints*total/float64(c.nc))
	}
	if c.nb > 0 {
		ideal = append(ideal, float64(c.B)/providers.BasisPoints*total/float64(c.nb))
	}
	round := make([]int, len(ideal))
	for i, x := range ideal {
		round[i] = int(x + 0.5)
		if x > 0 && round[i] == 0 {
			round[i] = 1
		}
		round[i] = min(round[i], maxWeight)
	}
	w := weights{stable: round[:len(c.base)]}
	i := len(c.base)
	if c.nc > 0 {
		w.canary = round[i]
		i++
	}
	if c.nb > 0 {
		w.baseline = round[i]
	}
	return w
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	if a < 0 {
		return -a
	}
	return a
}
