package kongtest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"gopkg.in/yaml.v3"
)

// config serves /config (kong/api/routes/config.lua): only with database = off; GET exports the
// configuration as {"config": "<declarative YAML>"}; POST replaces it (body: the declarative config
// as JSON or YAML, or {"config": "<string>"}), answering 304 when check_hash=1 and the hash is
// unchanged, 429 with Retry-After while a previous configuration loads, 400 with Kong's
// "invalid declarative configuration" body (code 14) for bad entities and 201 on success.
func (s *Server) config(r *http.Request, st *store) answer {
	if !s.dbless {
		return msg(http.StatusBadRequest, "this endpoint is only available when Kong is configured to not use a database")
	}
	switch r.Method {
	case http.MethodGet:
		out, err := yaml.Marshal(exportConfig(st))
		if err != nil {
			return msg(http.StatusInternalServerError, "An unexpected error occurred")
		}
		return answer{status: 200, body: map[string]any{"config": string(out)}}
	case http.MethodPost:
	default:
		return methodNotAllowed
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return msg(http.StatusBadRequest, "expected a declarative configuration")
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil || doc == nil {
		return msg(http.StatusBadRequest, "expected a declarative configuration")
	}
	if c, ok := doc["config"].(string); ok && doc["_format_version"] == nil {
		doc = nil
		if err := yaml.Unmarshal([]byte(c), &doc); err != nil || doc == nil {
			return answer{status: 400, body: map[string]any{"code": 14, "name": "invalid declarative configuration", "message": "failed parsing declarative configuration: " + err.Error()}}
		}
	}
	canon := mustJSON(doc)
	sum := md5.Sum(canon)
	hash := hex.EncodeToString(sum[:])
	if r.URL.Query().Get("check_hash") == "1" && hash == s.configHash {
		return answer{status: http.StatusNotModified}
	}
	// numbers must reach the validators as json.Number, as from the Admin API
	var norm map[string]any
	dec := json.NewDecoder(bytesReader(canon))
	dec.UseNumber()
	if err := dec.Decode(&norm); err != nil {
		return msg(http.StatusBadRequest, "expected a declarative configuration")
	}
	nst, errs := s.importConfig(norm)
	if len(errs) > 0 {
		return answer{status: 400, body: map[string]any{"code": 14, "name": "invalid declarative configuration", "fields": errs,
			"message": fmt.Sprintf("declarative config is invalid: %s", mustJSON(errs))}}
	}
	if len(s.busy) > 0 {
		ra := s.busy[0]
		s.busy = s.busy[1:]
		return answer{status: http.StatusTooManyRequests, body: map[string]any{"message": "Currently loading previous configuration"},
			header: map[string]string{"Retry-After": strconv.Itoa(ra)}}
	}
	s.ws["default"] = nst
	s.configHash = hash
	s.markDirtyLocked()
	s.markRouterDirtyLocked()
	for id, q := range s.queues {
		delete(s.queues, id)
		go q.stop()
	}
	return answer{status: http.StatusCreated, body: exportConfig(nst)}
}

type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func bytesReader(b []byte) io.Reader { return &byteReader{b: b} }

// exportConfig renders the store as GET /config does (kong/db/declarative/export.lua,
// export_from_db_impl, Kong 3.x): _format_version 3.0 and _transform false, one top-level list per
// entity type, and every foreign key written as the plain id of the entity it references
// (`upstream: <id>` on a target, `service: <id>` on a route or plugin), not expanded and not nested.
// A configuration POSTed with nested targets (as decK writes it) therefore comes back flat.
func exportConfig(st *store) map[string]any {
	out := map[string]any{"_format_version": "3.0", "_transform": false}
	strip := func(e map[string]any) map[string]any {
		c := cloneValue(e).(map[string]any)
		delete(c, "created_at")
		delete(c, "updated_at")
		for k, v := range c {
			if v == nil {
				delete(c, k)
			}
		}
		return c
	}
	ref := func(v any, _ string) any {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		return m["id"]
	}
	var services, routes, upstreams, targets, plugins []any
	for _, e := range st.list["services"] {
		services = append(services, strip(e))
	}
	for _, e := range st.list["routes"] {
		c := strip(e)
		c["service"] = ref(e["service"], "services")
		routes = append(routes, c)
	}
	for _, e := range st.list["upstreams"] {
		upstreams = append(upstreams, strip(e))
	}
	for _, t := range st.list["targets"] {
		c := strip(t)
		c["upstream"] = ref(t["upstream"], "upstreams")
		targets = append(targets, c)
	}
	for _, e := range st.list["plugins"] {
		c := strip(e)
		if e["service"] != nil {
			c["service"] = ref(e["service"], "services")
		}
		plugins = append(plugins, c)
	}
	for k, v := range map[string][]any{"services": services, "routes": routes, "upstreams": upstreams, "targets": targets, "plugins": plugins} {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// importEntity creates an entity of a declarative config (i: its index in its section); a
// problem goes into errPath under i, and nil is returned.
func (s *Server) importEntity(st *store, kind string, i int, e, fks, errPath map[string]any) map[string]any {
	body := map[string]any{}
	for k, v := range e {
		if k == "targets" || k == "routes" || k == "plugins" && kind == "services" {
			continue
		}
		body[k] = v
	}
	for _, fk := range []string{"service", "route"} {
		if name, ok := body[fk].(string); ok {
			body[fk] = map[string]any{"name": name}
		}
	}
	a := s.create(st, kind, body, fks)
	if a.status != http.StatusCreated {
		b := a.body.(map[string]any)
		if f, ok := b["fields"]; ok {
			errPath[strconv.Itoa(i)] = f
		} else {
			errPath[strconv.Itoa(i)] = b["message"]
		}
		return nil
	}
	return a.body.(map[string]any)
}

// docSection is the entities of one section of a declarative config.
func docSection(doc map[string]any, kind string) []map[string]any {
	a, _ := doc[kind].([]any)
	var out []map[string]any
	for _, e := range a {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// upstreamKey is how a top-level target names its upstream: its id or name, or a record
// {"id": ...} / {"name": ...}.
func upstreamKey(ref any) string {
	if m, ok := ref.(map[string]any); ok {
		if m["id"] == nil {
			return fmt.Sprint(m["name"])
		}
		return fmt.Sprint(m["id"])
	}
	return fmt.Sprint(ref)
}

// importConfig validates a declarative configuration into a new store. Errors are keyed like
// Kong's flattened declarative errors: {"upstreams": {"1": {"targets": {"0": {...}}}}}.
func (s *Server) importConfig(doc map[string]any) (*store, map[string]any) {
	st := newStore()
	errs := map[string]any{}
	add := func(kind string, i int, e map[string]any, fks map[string]any, errPath map[string]any) map[string]any {
		return s.importEntity(st, kind, i, e, fks, errPath)
	}
	section := func(kind string) []map[string]any { return docSection(doc, kind) }
	if _, ok := doc["_format_version"]; !ok {
		errs["_format_version"] = "required field missing"
	}
	svcErr := map[string]any{}
	for i, e := range section("services") {
		add("services", i, e, nil, svcErr)
	}
	upErr := map[string]any{}
	for i, e := range section("upstreams") {
		u := add("upstreams", i, e, nil, upErr)
		if u == nil {
			continue
		}
		tErr := map[string]any{}
		ts, _ := e["targets"].([]any)
		for j, t := range ts {
			if m, ok := t.(map[string]any); ok {
				add("targets", j, m, map[string]any{"upstream": map[string]any{"id": u["id"]}}, tErr)
			}
		}
		if len(tErr) > 0 {
			upErr[strconv.Itoa(i)] = map[string]any{"targets": tErr}
		}
	}
	// top-level targets name their upstream: its id or name, or a record {"id": ...} / {"name": ...}
	tErr := map[string]any{}
	for i, t := range section("targets") {
		u := st.find("upstreams", upstreamKey(t["upstream"]))
		if u == nil {
			tErr[strconv.Itoa(i)] = map[string]any{"upstream": "required field missing"}
			continue
		}
		add("targets", i, t, map[string]any{"upstream": map[string]any{"id": u["id"]}}, tErr)
	}
	rErr := map[string]any{}
	for i, e := range section("routes") {
		add("routes", i, e, nil, rErr)
	}
	pErr := map[string]any{}
	for i, e := range section("plugins") {
		add("plugins", i, e, nil, pErr)
	}
	for k, v := range map[string]map[string]any{"services": svcErr, "upstreams": upErr, "targets": tErr, "routes": rErr, "plugins": pErr} {
		if len(v) > 0 {
			errs[k] = v
		}
	}
	return st, errs
}
