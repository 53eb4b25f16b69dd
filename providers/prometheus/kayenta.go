package prometheus

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// KayentaQuery holds the Prometheus query fields of a Kayenta CanaryConfig metric
// (kayenta-prometheus PrometheusCanaryMetricSetQueryConfig, JSON field names as in Kayenta).
type KayentaQuery struct {
	Type                 string   `json:"type"`
	ResourceType         string   `json:"resourceType,omitempty"`
	MetricName           string   `json:"metricName,omitempty"`
	LabelBindings        []string `json:"labelBindings,omitempty"`
	GroupByFields        []string `json:"groupByFields,omitempty"`
	CustomFilter         string   `json:"customFilter,omitempty"` // deprecated in Kayenta, rejected as there
	CustomInlineTemplate string   `json:"customInlineTemplate,omitempty"`
	CustomFilterTemplate string   `json:"customFilterTemplate,omitempty"`
}

// KayentaScope is one side of a Kayenta canary scope (controlScope or experimentScope).
type KayentaScope struct {
	Scope               string            `json:"scope"`
	Location            string            `json:"location,omitempty"`
	ExtendedScopeParams map[string]string `json:"extendedScopeParams,omitempty"`
}

// DefaultKayentaScopeLabel is Kayenta's default prometheus.scopeLabel, used by the gce_instance
// resource type.
const DefaultKayentaScopeLabel = "instance"

// kayentaTemplate is the query's template: inline, or named from templates ("" without one).
func kayentaTemplate(q KayentaQuery, templates map[string]string) (string, error) {
	switch {
	case q.CustomInlineTemplate != "":
		return q.CustomInlineTemplate, nil
	case q.CustomFilterTemplate != "":
		if len(templates) == 0 {
			return "", fmt.Errorf("custom filter template %q is referenced, but the config defines no templates", q.CustomFilterTemplate)
		}
		t, ok := templates[q.CustomFilterTemplate]
		if !ok {
			return "", fmt.Errorf("custom filter template %q is not in templates (have: %s)", q.CustomFilterTemplate, strings.Join(sortedKeys(templates), ", "))
		}
		return t, nil
	}
	return "", nil
}

// templateVars are the variables a template sees: the scope's, the query's resourceType over the
// scope's, and every extended scope parameter.
func templateVars(q KayentaQuery, s KayentaScope, project string) map[string]string {
	vars := map[string]string{}
	for k, v := range map[string]string{"project": project, "resourceType": s.ExtendedScopeParams["resourceType"], "scope": s.Scope, "location": s.Location} {
		if v != "" {
			vars[k] = v
		}
	}
	if q.ResourceType != "" {
		vars["resourceType"] = q.ResourceType
	}
	for k, v := range s.ExtendedScopeParams {
		vars[k] = v
	}
	return vars
}

// resourceFilters are the label filters of a resource type without a custom filter.
func resourceFilters(resourceType string, s KayentaScope, project, scopeLabel string) ([]string, error) {
	var filters []string
	switch resourceType {
	case "gce_instance":
		if s.Location == "" {
			return nil, errors.New("location (i.e. region) is required when resourceType is gce_instance")
		}
		if s.Scope != "" {
			filters = append(filters, scopeLabel+`=~"`+s.Scope+`-.{4}"`)
		}
		zone := ".+/"
		if project != "" {
			zone += "projects/" + project + "/"
		}
		return append(filters, `zone=~"`+zone+"zones/"+s.Location+`-.{1}"`), nil
	case "aws_ec2_instance":
		if s.Location == "" {
			return nil, errors.New("location (i.e. region) is required when resourceType is aws_ec2_instance")
		}
		if s.Scope != "" {
			filters = append(filters, `asg_groupName="`+s.Scope+`"`)
		}
		return append(filters, `zone=~"`+s.Location+`.{1}"`), nil
	case "":
		return nil, errors.New("either a resourceType or a custom filter (customInlineTemplate or customFilterTemplate) is required")
	}
	return nil, fmt.Errorf("resourceType %q is not supported (valid: gce_instance, aws_ec2_instance); build the filter with labelBindings and a custom filter template instead", resourceType)
}

// BuildKayentaQuery returns the PromQL that Kayenta's Prometheus metrics service
// (PrometheusMetricsService.buildQuery) runs for query q in scope s:
//
//   - the filter template (customInlineTemplate, else templates[customFilterTemplate]) is
//     expanded with ${scope}, ${location}, ${project}, ${resourceType} and the scope's
//     extendedScopeParams (which win); an undefined variable is an error, ${name:-default}
//     supplies a default and $${...} is a literal ${...};
//   - an expanded filter starting with "PromQL:" is the whole query;
//   - otherwise the query is avg(metricName{filter tokens, labelBindings}) [by (groupByFields)],
//     where the filter is split at commas, or, without a filter, built for resourceType
//     gce_instance (scopeLabel=~"<scope>-.{4}", zone=~".+/[projects/<project>/]zones/<location>-.{1}")
//     or aws_ec2_instance (asg_groupName="<scope>", zone=~"<location>.{1}").
//
// scopeLabel is Kayenta's prometheus.scopeLabel ("" means "instance"). Differences from
// Kayenta: variable values are not themselves expanded again, and a query with groupByFields
// must still return one series per scope (Kayenta would pair several series by their tags).
func BuildKayentaQuery(q KayentaQuery, templates map[string]string, s KayentaScope, scopeLabel string) (string, error) {
	if q.Type != "" && q.Type != "prometheus" {
		return "", fmt.Errorf("query type %q is not prometheus", q.Type)
	}
	if q.CustomFilter != "" {
		return "", errors.New("customFilter is deprecated, use customInlineTemplate instead")
	}
	if scopeLabel == "" {
		scopeLabel = DefaultKayentaScopeLabel
	}
	project := s.ExtendedScopeParams["project"]
	resourceType := q.ResourceType
	if resourceType == "" {
		resourceType = s.ExtendedScopeParams["resourceType"]
	}

	tmpl, err := kayentaTemplate(q, templates)
	if err != nil {
		return "", err
	}
	var filter string
	if tmpl != "" {
		if filter, err = expandKayentaTemplate(strings.ReplaceAll(tmpl, `$\{`, "${"), templateVars(q, s, project)); err != nil {
			return "", err
		}
		if rest, ok := strings.CutPrefix(filter, "PromQL:"); ok {
			return rest, nil
		}
	}

	if q.MetricName == "" {
		return "", errors.New("metricName is required unless the template expands to a complete PromQL: expression")
	}
	var filters []string
	if filter != "" {
		filters = append(filters, strings.Split(filter, ",")...)
		filters = append(filters, q.LabelBindings...)
	} else {
		filters = append(filters, q.LabelBindings...)
		rf, err := resourceFilters(resourceType, s, project, scopeLabel)
		if err != nil {
			return "", err
		}
		filters = append(filters, rf...)
	}
	var b strings.Builder
	b.WriteString("avg(")
	b.WriteString(q.MetricName)
	if len(filters) > 0 {
		b.WriteString("{" + strings.Join(filters, ",") + "}")
	}
	b.WriteString(")")
	if len(q.GroupByFields) > 0 {
		b.WriteString(" by (" + strings.Join(q.GroupByFields, ",") + ")")
	}
	return b.String(), nil
}

// expandKayentaTemplate substitutes ${name} and ${name:-default} like Apache Commons
// StringSubstitutor with undefined variables as errors; "$${" escapes a literal "${".
func expandKayentaTemplate(tmpl string, vars map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tmpl); {
		if strings.HasPrefix(tmpl[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(tmpl[i:], "${") {
			b.WriteByte(tmpl[i])
			i++
			continue
		}
		end := strings.IndexByte(tmpl[i+2:], '}')
		if end < 0 {
			b.WriteString(tmpl[i:])
			break
		}
		expr := tmpl[i+2 : i+2+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		v, ok := vars[name]
		switch {
		case ok:
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("template variable ${%s} is not defined (defined: %s); set it with the scope or an extended scope parameter", name, strings.Join(sortedKeys(vars), ", "))
		}
		i += 2 + end + 1
	}
	return b.String(), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
