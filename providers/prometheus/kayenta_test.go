package prometheus

import (
	"strings"
	"testing"
)

// TestBuildKayentaQueryMatchesKayenta checks the PromQL against the expectations of Kayenta's own
// "Can dry-run query generation" spec (spinnaker/kayenta@a69573be,
// kayenta-prometheus/src/test/groovy/com/netflix/kayenta/prometheus/metrics/PrometheusMetricsServiceSpec.groovy):
// metric "some-metric-name", scopeLabel "instance", location "us-central1", templates
// someTemplate = 'some-label=${scope}' and anotherTemplate = 'my-server-group=${scope}'.
func TestBuildKayentaQueryMatchesKayenta(t *testing.T) {
	t.Parallel()
	templates := map[string]string{
		"someTemplate":    "some-label=${scope}",
		"anotherTemplate": "my-server-group=${scope}",
	}
	ab := []string{"a=b"}
	tests := []struct {
		name           string
		labelBindings  []string
		filterTemplate string
		inline         string
		resourceType   string
		scope          string
		extended       map[string]string
		want           string
	}{
		{"gce paved road", ab, "", "", "gce_instance", "some-server-group", nil,
			`avg(some-metric-name{a=b,instance=~"some-server-group-.{4}",zone=~".+/zones/us-central1-.{1}"})`},
		{"aws paved road", ab, "", "", "aws_ec2_instance", "some-server-group", nil,
			`avg(some-metric-name{a=b,asg_groupName="some-server-group",zone=~"us-central1.{1}"})`},
		{"filter template", ab, "someTemplate", "", "gce_instance", "some-app-canary", nil,
			"avg(some-metric-name{some-label=some-app-canary,a=b})"},
		{"inline wins over filter template", ab, "someTemplate", "customFilter=something,andSomething=else", "gce_instance", "", nil,
			"avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{"inline with aws", ab, "", "customFilter=something,andSomething=else", "aws_ec2_instance", "", nil,
			"avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{"inline with unknown resource type", ab, "", "customFilter=something,andSomething=else", "anything_else", "", nil,
			"avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{"template without resource type", ab, "anotherTemplate", "", "", "some-baseline", nil,
			"avg(some-metric-name{my-server-group=some-baseline,a=b})"},
		{"full PromQL", nil, "", `PromQL:histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`, "", "", nil,
			`histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
		{"full PromQL with scope", nil, "", `PromQL:histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="${scope}"})`, "", "/graph", nil,
			`histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
		{"full PromQL with extended params", nil, "", `PromQL:histogram_quantile(${quantile}, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="${scope}"})`, "", "/graph", map[string]string{"quantile": "0.99"},
			`histogram_quantile(0.99, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := KayentaQuery{Type: "prometheus", ResourceType: tc.resourceType, MetricName: "some-metric-name",
				LabelBindings: tc.labelBindings, CustomFilterTemplate: tc.filterTemplate, CustomInlineTemplate: tc.inline}
			got, err := BuildKayentaQuery(q, templates, KayentaScope{Scope: tc.scope, Location: "us-central1", ExtendedScopeParams: tc.extended}, "instance")
			if err != nil {
				t.Fatalf("BuildKayentaQuery: %v", err)
			}
			if got != tc.want {
				t.Errorf("query\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The shared example config (/work/shared/kayenta/examples/prometheus-integration-test-cpu.json,
// from Kayenta's integration tests) with its standard-template.
func TestBuildKayentaQueryExampleConfig(t *testing.T) {
	t.Parallel()
	q := KayentaQuery{Type: "prometheus", MetricName: "integration_test_cpu", CustomFilterTemplate: "standard-template"}
	tmpl := map[string]string{"standard-template": "namespace='${namespace}', scope='${scope}'"}
	for _, tc := range []struct{ scope, want string }{
		{"canary", "avg(integration_test_cpu{namespace='prod', scope='canary'})"},
		{"baseline", "avg(integration_test_cpu{namespace='prod', scope='baseline'})"},
	} {
		got, err := BuildKayentaQuery(q, tmpl, KayentaScope{Scope: tc.scope, ExtendedScopeParams: map[string]string{"namespace": "prod"}}, "")
		if err != nil || got != tc.want {
			t.Errorf("scope %s: got %q, %v; want %q", tc.scope, got, err, tc.want)
		}
	}
	withGroup := q
	withGroup.GroupByFields = []string{"pod", "zone"}
	got, err := BuildKayentaQuery(withGroup, tmpl, KayentaScope{Scope: "c", ExtendedScopeParams: map[string]string{"namespace": "n"}}, "")
	if want := "avg(integration_test_cpu{namespace='n', scope='c'}) by (pod,zone)"; err != nil || got != want {
		t.Errorf("groupBy: got %q, %v; want %q", got, err, want)
	}
}

func TestBuildKayentaQueryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		q       KayentaQuery
		tmpl    map[string]string
		scope   KayentaScope
		wantErr string
	}{
		{"other provider", KayentaQuery{Type: "datadog", MetricName: "m"}, nil, KayentaScope{}, `"datadog" is not prometheus`},
		{"deprecated customFilter", KayentaQuery{MetricName: "m", CustomFilter: "a=b"}, nil, KayentaScope{}, "deprecated"},
		{"no templates", KayentaQuery{MetricName: "m", CustomFilterTemplate: "t"}, nil, KayentaScope{}, "defines no templates"},
		{"unknown template", KayentaQuery{MetricName: "m", CustomFilterTemplate: "t"}, map[string]string{"u": "x"}, KayentaScope{}, `"t" is not in templates (have: u)`},
		{"undefined variable", KayentaQuery{MetricName: "m", CustomInlineTemplate: "ns=${namespace}"}, nil, KayentaScope{Scope: "s"}, "${namespace} is not defined"},
		{"no filter no resource type", KayentaQuery{MetricName: "m"}, nil, KayentaScope{}, "either a resourceType or a custom filter"},
		{"unsupported resource type", KayentaQuery{MetricName: "m", ResourceType: "k8s_pod"}, nil, KayentaScope{}, `resourceType "k8s_pod" is not supported`},
		{"gce needs location", KayentaQuery{MetricName: "m", ResourceType: "gce_instance"}, nil, KayentaScope{Scope: "s"}, "location"},
		{"no metric name", KayentaQuery{CustomInlineTemplate: "a=b"}, nil, KayentaScope{}, "metricName is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := BuildKayentaQuery(tc.q, tc.tmpl, tc.scope, "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestExpandKayentaTemplate(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"scope": "canary", "location": "eu"}
	tests := []struct{ in, want string }{
		{"scope='${scope}'", "scope='canary'"},
		{"${scope}-${location}", "canary-eu"},
		{"${missing:-fallback}", "fallback"},
		{"${scope:-unused}", "canary"},
		{"$${scope}", "${scope}"},
		{"cost $5 ${", "cost $5 ${"},
		{`$\{scope}`, `$\{scope}`}, // unescaping of stored templates happens in BuildKayentaQuery
	}
	for _, tc := range tests {
		got, err := expandKayentaTemplate(tc.in, vars)
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	got, err := BuildKayentaQuery(KayentaQuery{MetricName: "m", CustomInlineTemplate: `s=$\{scope}`}, nil, KayentaScope{Scope: "x"}, "")
	if err != nil || got != "avg(m{s=x})" {
		t.Errorf("escaped inline template: %q, %v", got, err)
	}
}

func FuzzExpandKayentaTemplate(f *testing.F) {
	for _, s := range []string{"a=${scope}", "$${x}", "${a:-b}", "${", "${}", "$$$${scope}}", "PromQL:${scope}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		vars := map[string]string{"scope": "S", "location": "L"}
		out, err := expandKayentaTemplate(tmpl, vars)
		if err != nil {
			if !strings.Contains(err.Error(), "is not defined") {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !strings.Contains(tmpl, "$") && out != tmpl {
			t.Fatalf("template without $ changed: %q -> %q", tmpl, out)
		}
	})
}
