package judge

import (
	"encoding/json"
	"math"
	"strconv"
)

// MetricSetPair is Kayenta's judge input for one metric (one tag combination): the baseline ("control")
// and canary ("experiment") series. NaN marks a missing data point.
type MetricSetPair struct {
	Name       string
	ID         string            // "" when absent
	Tags       map[string]string // nil when absent or empty
	Control    []float64         // baseline; never nil once parsed
	Experiment []float64         // canary; never nil once parsed
	Scopes     json.RawMessage   // kept verbatim (compact); nil when absent
	Attributes json.RawMessage   // kept verbatim (compact); nil when absent
}

// ParseMetricSetPairs parses Kayenta's MetricSetPairList JSON:
// [{"name", "id", "tags", "values": {"control": [...], "experiment": [...]}, "scopes"?, "attributes"?}].
// Values are JSON numbers or the strings "NaN", "Infinity", "-Infinity"; a null value (which makes
// Kayenta's judge fail) is rejected with a *ConfigError naming its path.
func ParseMetricSetPairs(data []byte) ([]MetricSetPair, error) {
	d := decoder{source: SourcePairs}
	doc, err := d.parse(data)
	if err != nil {
		return nil, err
	}
	l, err := d.list(doc, "", `of metric set pairs [{"name": ..., "values": {"control": [...], "experiment": [...]}}]`)
	if err != nil {
		return nil, err
	}
	pairs := make([]MetricSetPair, 0, len(l))
	for i, v := range l {
		p, err := d.pair(v, pathIndex("", i))
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

func (d decoder) pair(v any, path string) (MetricSetPair, error) {
	var p MetricSetPair
	m, err := d.object(v, path, `{"name": ..., "values": {"control": [...], "experiment": [...]}}`)
	if err != nil {
		return p, err
	}
	nv, ok := m["name"]
	if !ok {
		return p, d.fail(pathKey(path, "name"), "missing; want the name of a metric of the canary config")
	}
	if p.Name, err = d.str(nv, pathKey(path, "name"), "a metric name (a string)"); err != nil {
		return p, err
	}
	if iv, ok := m["id"]; ok && iv != nil {
		if p.ID, err = d.str(iv, pathKey(path, "id"), "a string"); err != nil {
			return p, err
		}
	}
	if tv, ok := m["tags"]; ok && tv != nil {
		if p.Tags, err = d.stringMap(tv, pathKey(path, "tags"), `{"<tag>": "<value>"}`); err != nil {
			return p, err
		}
	}
	for _, k := range []struct {
		key string
		dst *json.RawMessage
	}{{"scopes", &p.Scopes}, {"attributes", &p.Attributes}} {
		if x, ok := m[k.key]; ok && x != nil {
			o, err := d.object(x, pathKey(path, k.key), `{"control": {...}, "experiment": {...}}`)
			if err != nil {
				return p, err
			}
			*k.dst = raw(o)
		}
	}
	vp := pathKey(path, "values")
	vv, ok := m["values"]
	if !ok {
		return p, d.fail(vp, `missing; want {"control": [...], "experiment": [...]}`)
	}
	vals, err := d.object(vv, vp, `{"control": [...], "experiment": [...]}`)
	if err != nil {
		return p, err
	}
	if p.Control, err = d.series(vals, "control", vp); err != nil {
		return p, err
	}
	if p.Experiment, err = d.series(vals, "experiment", vp); err != nil {
		return p, err
	}
	return p, nil
}

func (d decoder) series(vals map[string]any, key, path string) ([]float64, error) {
	sp := pathKey(path, key)
	v, ok := vals[key]
	if !ok {
		who := "baseline"
		if key == "experiment" {
			who = "canary"
		}
		return nil, d.fail(sp, "missing; want the %s's data points as a list (use [] for none)", who)
	}
	l, err := d.list(v, sp, `of numbers (or "NaN")`)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(l))
	for i, x := range l {
		ep := pathIndex(sp, i)
		switch x := x.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return nil, d.fail(ep, "got %s; number is out of range for a 64-bit float", clip(string(x)))
			}
			out[i] = f
		case string:
			switch x {
			case "NaN":
				out[i] = math.NaN()
			case "Infinity":
				out[i] = math.Inf(1)
			case "-Infinity":
				out[i] = math.Inf(-1)
			default:
				return nil, d.fail(ep, `got %s; want a number, or "NaN" for a missing point ("Infinity", "-Infinity" also allowed)`, describe(x))
			}
		case nil:
			return nil, d.fail(ep, `got null; want a number, or "NaN" for a missing point (Kayenta's judge fails on null)`)
		default:
			return nil, d.fail(ep, `got %s; want a number, or "NaN" for a missing point`, describe(x))
		}
	}
	return out, nil
}

// MarshalJSON writes the pair in Kayenta's shape, NaN and ±Inf as the strings Jackson uses.
func (p MetricSetPair) MarshalJSON() ([]byte, error) {
	tags := p.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	out := struct {
		Name       string             `json:"name"`
		ID         string             `json:"id,omitempty"`
		Tags       map[string]string  `json:"tags"`
		Values     map[string][]Float `json:"values"`
		Scopes     json.RawMessage    `json:"scopes,omitempty"`
		Attributes json.RawMessage    `json:"attributes,omitempty"`
	}{Name: p.Name, ID: p.ID, Tags: tags, Scopes: p.Scopes, Attributes: p.Attributes,
		Values: map[string][]Float{"control": floats(p.Control), "experiment": floats(p.Experiment)}}
	return json.Marshal(out)
}

func floats(v []float64) []Float {
	out := make([]Float, len(v))
	for i, f := range v {
		out[i] = Float(f)
	}
	return out
}

// Float is a float64 that encodes NaN and ±Inf as Jackson does ("NaN", "Infinity", "-Infinity") and
// integral values with a ".0" (100.0), so that results read like Kayenta's.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	x := float64(f)
	switch {
	case math.IsNaN(x):
		return []byte(`"NaN"`), nil
	case math.IsInf(x, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(x, -1):
		return []byte(`"-Infinity"`), nil
	}
	return []byte(fmtNum(x)), nil
}

// UnmarshalJSON implements json.Unmarshaler (numbers and the three strings).
func (f *Float) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		switch s {
		case "NaN":
			*f = Float(math.NaN())
		case "Infinity":
			*f = Float(math.Inf(1))
		case "-Infinity":
			*f = Float(math.Inf(-1))
		default:
			return &json.UnsupportedValueError{Str: s}
		}
		return nil
	}
	var x float64
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*f = Float(x)
	return nil
}
