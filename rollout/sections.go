package rollout

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/canaryctl/canaryctl/providers"
)

// GatewaySpec selects the gateway. Type "builtin" is canaryctl's own reverse proxy, either embedded in
// the run process (Listen) or a separate `canaryctl proxy` reached through its admin API (Admin).
// Other types are registered by their packages (providers.RegisterGateway) and configured in their
// own section, gateway.<type> (gateway.kong: package providers/kong).
type GatewaySpec struct {
	Type      string `yaml:"type" json:"type"`
	Listen    string `yaml:"listen,omitempty" json:"listen,omitempty"`
	Admin     string `yaml:"admin,omitempty" json:"admin,omitempty"`
	TokenEnv  string `yaml:"tokenEnv,omitempty" json:"tokenEnv,omitempty"`
	TokenFile string `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty"`
	// Sections holds the provider sections written in the spec, by type name, each decoded into the
	// value its registered type's Section returns (gateway.kong: *kong.Spec).
	Sections map[string]any `yaml:"-" json:"sections,omitempty"`
}

// MetricsSpec selects where metrics come from: "builtin" is the built-in proxy's per-request data.
// Other types are registered by their packages (providers.RegisterMetrics) and configured in their
// own section, metrics.<type> (metrics.prometheus: package providers/prometheus).
type MetricsSpec struct {
	Type string `yaml:"type" json:"type"`
	// Sections: see GatewaySpec.Sections (metrics.prometheus: *prometheus.Spec).
	Sections map[string]any `yaml:"-" json:"sections,omitempty"`
}

// Section is the section of the gateway's own type (gateway.<type>), or nil.
func (g GatewaySpec) Section() any { return g.Sections[g.Type] }

// Section is the section of the metrics source's own type (metrics.<type>), or nil.
func (m MetricsSpec) Section() any { return m.Sections[m.Type] }

// The builtin gateway (providers/proxy, configured by GatewaySpec's own fields) and its request
// log as a metrics source.
func init() {
	providers.RegisterGateway("builtin", builtinGateway{})
	providers.RegisterMetrics("builtin", builtinMetrics{})
}

// builtinGateway is configured by GatewaySpec's own fields.
type builtinGateway struct{ providers.NoSection }

func (builtinGateway) Caps(any) providers.GatewayCaps { return providers.FullCaps }

type builtinMetrics struct{ providers.NoSection }

func (builtinMetrics) Gateway() (name, origin string) { return "builtin", "the builtin gateway" }
func (builtinMetrics) PerRequest() bool               { return true }

// gatewaySections and metricsSections are the registered section types by name.
func gatewaySections() map[string]reflect.Type {
	return sectionTypes(providers.GatewayNames(), func(n string) providers.GatewayType { t, _ := providers.LookupGateway(n); return t })
}

func metricsSections() map[string]reflect.Type {
	return sectionTypes(providers.MetricsNames(), func(n string) providers.MetricsType { t, _ := providers.LookupMetrics(n); return t })
}

func sectionTypes[T interface{ Section() any }](names []string, lookup func(string) T) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for _, n := range names {
		if s := lookup(n).Section(); s != nil {
			out[n] = reflect.TypeOf(s)
		}
	}
	return out
}

// YAMLShape is the struct gateway's YAML mapping has (yamlerr.Shaper): GatewaySpec's fields, then
// one per registered section.
func (GatewaySpec) YAMLShape() reflect.Type {
	return shape(reflect.TypeFor[GatewaySpec](), gatewaySections())
}

// YAMLShape: see GatewaySpec.YAMLShape.
func (MetricsSpec) YAMLShape() reflect.Type {
	return shape(reflect.TypeFor[MetricsSpec](), metricsSections())
}

// UnmarshalYAML decodes gateway's mapping with the decoder's own settings (unknown fields are
// errors, in the sections too), each section into its registered type.
func (g *GatewaySpec) UnmarshalYAML(unmarshal func(any) error) error {
	sections, err := decodeShape(unmarshal, g, gatewaySections())
	g.Sections = sections
	return err
}

// UnmarshalYAML: see GatewaySpec.UnmarshalYAML.
func (m *MetricsSpec) UnmarshalYAML(unmarshal func(any) error) error {
	sections, err := decodeShape(unmarshal, m, metricsSections())
	m.Sections = sections
	return err
}

// decodeShape decodes into the shape of *base plus sections, copies base's fields back and returns
// the sections given (nil when none).
func decodeShape(unmarshal func(any) error, base any, sections map[string]reflect.Type) (map[string]any, error) {
	bv := reflect.ValueOf(base).Elem()
	v := reflect.New(shape(bv.Type(), sections)).Elem()
	err := unmarshal(v.Addr().Interface())
	var out map[string]any
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if strings.HasPrefix(f.Name, sectionPrefix) {
			if !v.Field(i).IsNil() {
				if out == nil {
					out = map[string]any{}
				}
				out[sectionName(f)] = v.Field(i).Interface()
			}
			continue
		}
		bv.FieldByName(f.Name).Set(v.Field(i))
	}
	return out, err
}

// sectionPrefix starts the names of the section fields of a shape.
const sectionPrefix = "Section_"

func sectionName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// shape is the struct a YAML mapping of base's fields plus one field per registered section has:
// base's fields first (but those tagged yaml:"-"), then the sections sorted by name.
func shape(base reflect.Type, sections map[string]reflect.Type) reflect.Type {
	var fields []reflect.StructField
	for i := range base.NumField() {
		f := base.Field(i)
		if f.Tag.Get("yaml") != "-" {
			fields = append(fields, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
		}
	}
	for i, n := range slices.Sorted(maps.Keys(sections)) {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("%s%d", sectionPrefix, i), Type: sections[n],
			Tag: reflect.StructTag(fmt.Sprintf(`yaml:"%s,omitempty" json:"%s,omitempty"`, n, n))})
	}
	return reflect.StructOf(fields)
}
