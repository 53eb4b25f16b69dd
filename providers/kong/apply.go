package kong

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	gokong "github.com/kong/go-kong/kong"
	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/providers"
)

type op int

const (
	opCreate op = iota
	opPatch
	opDelete
)

// change is one change to a target of the rollout's upstream.
type change struct {
	op     op
	addr   string
	id     string
	weight int
	tags   []string // create: the tags; patch: the new tags if not nil
}

// apply makes changes in order: one Admin API call each, or (dbless mode) one read-modify-write of
// /config for all of them, which Kong applies atomically.
func (r *Router) apply(ctx context.Context, changes []change) error {
	if len(changes) == 0 {
		return nil
	}
	if r.cfg.Mode == ModeDBLess {
		return r.applyConfig(ctx, changes)
	}
	for _, c := range changes {
		if err := r.applyOne(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (r *Router) applyOne(ctx context.Context, c change) error {
	up := r.st.upstreamID
	switch c.op {
	case opCreate:
		tags := make([]*string, len(c.tags))
		for i := range c.tags {
			tags[i] = &c.tags[i]
		}
		_, err := r.client.Targets.Create(ctx, &up, &gokong.Target{Target: ptr(c.addr), Weight: ptr(c.weight), Tags: tags})
		if err == nil {
			return nil
		}
		if !isStatus(err, http.StatusConflict) {
			return fmt.Errorf("create target %s: %w", c.addr, err)
		}
		// Kong 3.x answers 409 to a second POST of the same target (e.g. our own POST that timed
		// out after Kong stored it and was retried): adopt it if it is ours, then set its weight.
		var t gokong.Target
		if gerr := r.call(ctx, http.MethodGet, "/upstreams/"+up+"/targets/"+c.addr, nil, nil, &t); gerr != nil {
			return fmt.Errorf("create target %s: %w (and reading it: %v)", c.addr, err, gerr)
		}
		ft := fromKong(&t)
		if !slices.Contains(ft.Tags, r.rolloutTag()) {
			return fmt.Errorf("create target %s: it already exists and this rollout did not create it: %w", c.addr, err)
		}
		return r.applyOne(ctx, change{op: opPatch, addr: c.addr, id: ft.ID, weight: c.weight, tags: c.tags})
	case opPatch:
		body := map[string]any{"weight": c.weight}
		if c.tags != nil {
			body["tags"] = c.tags
		}
		key := c.id
		if key == "" {
			key = c.addr
		}
		if err := r.call(ctx, http.MethodPatch, "/upstreams/"+up+"/targets/"+key, nil, body, nil); err != nil {
			return fmt.Errorf("set weight of target %s to %d: %w", c.addr, c.weight, err)
		}
	case opDelete:
		key := c.id
		if key == "" {
			key = c.addr
		}
		err := r.client.Targets.Delete(ctx, &up, &key)
		if err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("delete target %s: %w", c.addr, err)
		}
	}
	return nil
}

// applyConfig is the DB-less path: GET /config, change the upstream's targets, POST /config with
// check_hash=1 (Kong answers 304 when nothing changed; 429 with Retry-After while it still loads a
// previous configuration, which the Doer waits out and retries).
func (r *Router) applyConfig(ctx context.Context, changes []change) error {
	var got struct {
		Config string `json:"config"`
	}
	if err := r.call(ctx, http.MethodGet, "/config", nil, nil, &got); err != nil {
		return fmt.Errorf("read the declarative configuration: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(got.Config), &doc); err != nil || doc == nil {
		return fmt.Errorf("parse the declarative configuration from GET /config: %v", err)
	}
	targets, set, err := r.configTargets(doc)
	if err != nil {
		return err
	}
	for _, c := range changes {
		i := slices.IndexFunc(targets, func(t map[string]any) bool { return t["target"] == c.addr })
		switch c.op {
		case opCreate:
			if i >= 0 {
				return fmt.Errorf("create target %s: it already exists in the declarative configuration", c.addr)
			}
			targets = append(targets, map[string]any{"target": c.addr, "weight": c.weight, "tags": c.tags})
		case opPatch:
			if i < 0 {
				return fmt.Errorf("set weight of target %s: %w in the declarative configuration", c.addr, providers.ErrNotFound)
			}
			targets[i]["weight"] = c.weight
			if c.tags != nil {
				targets[i]["tags"] = c.tags
			}
		case opDelete:
			if i >= 0 {
				targets = slices.Delete(targets, i, i+1)
			}
		}
	}
	set(targets)
	q := struct {
		CheckHash int `url:"check_hash"`
	}{1}
	if err := r.call(ctx, http.MethodPost, "/config", q, doc, nil); err != nil {
		return fmt.Errorf("post the declarative configuration: %w", err)
	}
	return nil
}

// configTargets finds the rollout upstream's targets in a declarative configuration, nested under
// the upstream or top-level with an `upstream` reference, and returns a setter that writes them
// back nested.
func (r *Router) configTargets(doc map[string]any) ([]map[string]any, func([]map[string]any), error) {
	ups, _ := doc["upstreams"].([]any)
	var up map[string]any
	for _, u := range ups {
		m, ok := u.(map[string]any)
		if ok && (m["name"] == r.st.upstream || m["id"] == r.st.upstreamID) {
			up = m
		}
	}
	if up == nil {
		return nil, nil, fmt.Errorf("upstream %q: %w in the declarative configuration", r.st.upstream, providers.ErrNotFound)
	}
	var targets []map[string]any
	nested, _ := up["targets"].([]any)
	for _, t := range nested {
		if m, ok := t.(map[string]any); ok {
			targets = append(targets, m)
		}
	}
	var rest []any
	top, _ := doc["targets"].([]any)
	for _, t := range top {
		m, ok := t.(map[string]any)
		if ok && r.isRolloutUpstream(m["upstream"]) {
			delete(m, "upstream")
			targets = append(targets, m)
			continue
		}
		rest = append(rest, t)
	}
	set := func(ts []map[string]any) {
		for _, t := range ts {
			delete(t, "upstream") // nested: the upstream is the parent
		}
		a := make([]any, len(ts))
		for i, t := range ts {
			a[i] = t
		}
		up["targets"] = a
		if top != nil {
			doc["targets"] = rest
		}
	}
	return targets, set, nil
}

// isRolloutUpstream reports whether a declarative target's `upstream` names the rollout's upstream:
// Kong's export writes the plain id (kong/db/declarative/export.lua); a hand-written or decK file
// may use the name, or the Admin API's record form {"id": ...} / {"name": ...}.
func (r *Router) isRolloutUpstream(ref any) bool {
	switch v := ref.(type) {
	case string:
		return v == r.st.upstream || v == r.st.upstreamID
	case map[string]any:
		return v["id"] == r.st.upstreamID || v["name"] == r.st.upstream || v["id"] == r.st.upstream
	}
	return false
}
