package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/canaryctl/canaryctl/cmd"
	"github.com/canaryctl/canaryctl/rollout"
	"github.com/canaryctl/canaryctl/rollout/etcdtest"
)

// The rules by which Spinnaker turns a Run Job's container log into stage outputs (clouddriver's
// PropertyParser reads the log of the container named by the stage's propertyFile; orca's
// WaitOnJobCompletion puts the properties into the stage outputs and fails a succeeded job whose
// properties are empty). Read from Spinnaker's source; the behaviour is modelled here, not copied:
//
//   - A line that starts (after blanks) with SPINNAKER_CONFIG_JSON= holds one JSON object; its keys
//     become properties. Invalid JSON makes the whole parse fail: every property is lost.
//   - A line with SPINNAKER_PROPERTY_KEY=VALUE sets the property key (lower-cased); a value that
//     contains '=' does not survive (the line is split on every '=').
//   - Properties are read whether the job succeeded or failed; a job that succeeded while naming a
//     property file but produced no property fails the stage.

var spinnakerJSONLine = regexp.MustCompile(`^\s*SPINNAKER_CONFIG_JSON=`)

// spinnakerProperties parses a container log the way Spinnaker does.
func spinnakerProperties(log string) (map[string]any, error) {
	props := map[string]any{}
	for _, line := range strings.Split(log, "\n") {
		if i := strings.Index(line, "SPINNAKER_PROPERTY_"); i >= 0 {
			parts := strings.Split(line, "=")
			if len(parts) < 2 {
				return nil, fmt.Errorf("property line %q has no value", line)
			}
			if len(parts) == 2 {
				key := strings.ToLower(strings.Replace(parts[0], "SPINNAKER_PROPERTY_", "", 1))
				props[key] = strings.TrimSpace(parts[1])
			}
		}
		if spinnakerJSONLine.MatchString(line) {
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.Replace(line, "SPINNAKER_CONFIG_JSON=", "", 1)), &m); err != nil {
				return nil, fmt.Errorf("SPINNAKER_CONFIG_JSON line: %w", err)
			}
			for k, v := range m {
				props[k] = v
			}
		}
	}
	return props, nil
}

var errNoProperties = errors.New("expected properties but they were missing, empty or invalid")

// stageOutcome is what the Run Job stage makes of a finished job: its status and outputs.
func stageOutcome(jobSucceeded bool, propertyFile, log string) (status string, outputs map[string]any, err error) {
	status = "TERMINAL"
	if jobSucceeded {
		status = "SUCCEEDED"
	}
	if propertyFile == "" {
		return status, nil, nil
	}
	props, perr := spinnakerProperties(log)
	if perr != nil {
		props = nil // the parse failed: no property at all
	}
	if jobSucceeded && len(props) == 0 {
		return "TERMINAL", nil, errNoProperties
	}
	outputs = map[string]any{"propertyFileContents": props}
	for k, v := range props {
		outputs[k] = v
	}
	return status, outputs, nil
}

func TestSpinnakerOutputRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		succeeded bool
		log       string
		want      map[string]any // nil: no outputs
		wantErr   bool
	}{
		{"json line", true, "progress\nSPINNAKER_CONFIG_JSON={\"score\":97.5,\"phase\":\"Promoted\"}\n", map[string]any{"score": 97.5, "phase": "Promoted"}, false},
		{"json line after blanks", true, "  SPINNAKER_CONFIG_JSON={\"a\":1}\r\n", map[string]any{"a": 1.0}, false},
		{"json not at line start is ignored", true, "x SPINNAKER_CONFIG_JSON={\"a\":1}\nSPINNAKER_PROPERTY_B=2\n", map[string]any{"b": "2"}, false},
		{"bad json loses every property", false, "SPINNAKER_PROPERTY_A=1\nSPINNAKER_CONFIG_JSON={\"a\":\n", map[string]any{}, false},
		{"json split over two lines is bad json", false, "SPINNAKER_CONFIG_JSON={\"a\":\n1}\n", map[string]any{}, false},
		{"keys lower-cased", true, "SPINNAKER_PROPERTY_Score=97\n", map[string]any{"score": "97"}, false},
		{"value with = dropped", true, "SPINNAKER_PROPERTY_URL=a=b\nSPINNAKER_PROPERTY_OK=1\n", map[string]any{"ok": "1"}, false},
		{"read on failure too", false, "SPINNAKER_CONFIG_JSON={\"phase\":\"RolledBack\"}\n", map[string]any{"phase": "RolledBack"}, false},
		{"succeeded without properties fails the stage", true, "all good\n", nil, true},
		{"succeeded with bad json fails the stage", true, "SPINNAKER_CONFIG_JSON={\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, out, err := stageOutcome(tc.succeeded, "canaryctl", tc.log)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if tc.want == nil {
				if out != nil {
					t.Fatalf("outputs %v, want none", out)
				}
				return
			}
			got, _ := out["propertyFileContents"].(map[string]any)
			if !reflect.DeepEqual(got, tc.want) && (len(tc.want) > 0 || len(got) > 0) {
				t.Fatalf("properties %v, want %v", got, tc.want)
			}
		})
	}
}

// spinnakerExample is the Spinnaker example: ConfigMap, Job and pipeline.
type spinnakerExample struct {
	configMap map[string]any
	job       map[string]any
	pipeline  map[string]any
	rawPipe   string
}

func loadSpinnakerExample(t *testing.T) spinnakerExample {
	t.Helper()
	ex := spinnakerExample{configMap: readYAML(t, "spinnaker/configmap.yaml"), job: readYAML(t, "spinnaker/job.yaml")}
	b, err := os.ReadFile("spinnaker/pipeline.json")
	if err != nil {
		t.Fatal(err)
	}
	ex.rawPipe = string(b)
	if err := json.Unmarshal(b, &ex.pipeline); err != nil {
		t.Fatalf("pipeline.json: %v", err)
	}
	return ex
}

// jsonNormal round-trips v through JSON so YAML and JSON documents compare equal.
func jsonNormal(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func stage(t *testing.T, pipe map[string]any, typ string) map[string]any {
	t.Helper()
	for _, s := range pipe["stages"].([]any) {
		if m := s.(map[string]any); m["type"] == typ {
			return m
		}
	}
	t.Fatalf("pipeline has no %s stage", typ)
	return nil
}

// jobRun is the container of the example's Job, ready to run: canaryctl's arguments, its
// environment with secrets resolved, and the spec from the ConfigMap.
type jobRun struct {
	container    string
	args         []string
	env          map[string]string
	specArg      string
	spec         map[string]any
	propertyFile string
}

// checkSpinnakerExample checks that the example's parts fit together and returns the job to run.
func checkSpinnakerExample(t *testing.T, ex spinnakerExample, secrets map[string]string) jobRun {
	t.Helper()
	job, cm := ex.job, ex.configMap
	if job["kind"] != "Job" || dig(job, "spec", "template", "spec", "restartPolicy") != "Never" {
		t.Fatalf("job.yaml: want kind Job, restartPolicy Never")
	}
	// The pipeline applies this very ConfigMap and runs this very Job.
	deploy, runJob := stage(t, ex.pipeline, "deployManifest"), stage(t, ex.pipeline, "runJobManifest")
	if !reflect.DeepEqual(jsonNormal(t, dig(deploy, "manifests", 0)), jsonNormal(t, cm)) {
		t.Fatal("pipeline.json's deployManifest stage does not apply spinnaker/configmap.yaml as it is")
	}
	if !reflect.DeepEqual(jsonNormal(t, runJob["manifest"]), jsonNormal(t, job)) {
		t.Fatal("pipeline.json's runJobManifest manifest is not spinnaker/job.yaml as it is")
	}
	if runJob["name"] != "Canary" || runJob["consumeArtifactSource"] != "propertyFile" {
		t.Fatalf("the Run Job stage must be named Canary and capture output from the log (propertyFile)")
	}
	jr := jobRun{propertyFile: runJob["propertyFile"].(string), env: map[string]string{}}
	var ctr map[string]any
	for _, c := range dig(job, "spec", "template", "spec", "containers").([]any) {
		if c.(map[string]any)["name"] == jr.propertyFile {
			ctr = c.(map[string]any)
		}
	}
	if ctr == nil {
		t.Fatalf("propertyFile %q names no container of the job", jr.propertyFile)
	}
	jr.container = ctr["name"].(string)
	for _, a := range ctr["args"].([]any) {
		jr.args = append(jr.args, a.(string))
	}
	if len(jr.args) == 0 || jr.args[0] != "run" || !slices.Contains(jr.args, "--spinnaker") {
		t.Fatalf("container args %q: want canaryctl run --spinnaker", jr.args)
	}
	for _, e := range ctr["env"].([]any) {
		e := e.(map[string]any)
		name := e["name"].(string)
		if v, ok := e["value"].(string); ok {
			jr.env[name] = v
			continue
		}
		if fp, _ := dig(e, "valueFrom", "fieldRef", "fieldPath").(string); fp != "" {
			if fp != "metadata.labels['job-name']" {
				t.Fatalf("env %s: fieldRef %q unknown to the test", name, fp)
			}
			jr.env[name] = jobName // Kubernetes labels a Job's pods with its name
			continue
		}
		key, _ := dig(e, "valueFrom", "secretKeyRef", "key").(string)
		v, ok := secrets[key]
		if !ok {
			t.Fatalf("env %s: secretKeyRef key %q unknown to the test", name, key)
		}
		jr.env[name] = v
	}
	// --spec names a file of the ConfigMap, mounted from a volume of that ConfigMap.
	jr.specArg = flagValue(jr.args, "--spec")
	var file string
	for _, m := range ctr["volumeMounts"].([]any) {
		m := m.(map[string]any)
		rel, err := filepath.Rel(m["mountPath"].(string), jr.specArg)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range dig(job, "spec", "template", "spec", "volumes").([]any) {
			v := v.(map[string]any)
			if v["name"] == m["name"] && dig(v, "configMap", "name") == dig(cm, "metadata", "name") {
				file = path.Clean(rel)
			}
		}
	}
	data, _ := dig(cm, "data", file).(string)
	if data == "" {
		t.Fatalf("--spec %s is not a file of ConfigMap %v mounted in the job", jr.specArg, dig(cm, "metadata", "name"))
	}
	if err := yaml.Unmarshal([]byte(data), &jr.spec); err != nil {
		t.Fatalf("the ConfigMap's %s: %v", file, err)
	}
	return jr
}

// TestSpinnakerRunJob runs the example Job's container (canaryctl run --spinnaker with the
// ConfigMap's spec and the Secret's token) against a loopback stand-in for the cluster, reads its log
// (stdout and stderr interleaved, as Kubernetes keeps it) with Spinnaker's rules, and checks the
// stage outcome and every output the pipeline's SpEL expressions read: a promoted and a rolled-back
// run, and a run that never starts (invalid spec).
func TestSpinnakerRunJob(t *testing.T) {
	t.Parallel()
	ex := loadSpinnakerExample(t)
	refs := map[string]bool{}
	for _, m := range regexp.MustCompile(`#stage\('Canary'\)\.outputs\.(\w+)`).FindAllStringSubmatch(ex.rawPipe, -1) {
		refs[m[1]] = true
	}
	if !refs["score"] || !refs["promoted"] || !refs["phase"] {
		t.Fatalf("pipeline.json reads %v; want at least score, phase and promoted", refs)
	}
	tests := []struct {
		name         string
		canaryStatus int
		breakSpec    bool
		wantExit     int
		wantStatus   string
		wantPhase    string
		wantPromoted bool
		evicted      bool // the first attempt's pod is SIGKILLed mid-step; the Job's retry runs
	}{
		{"promoted", 200, false, cmd.ExitOK, "SUCCEEDED", "Promoted", true, false},
		{"rolled back", 500, false, cmd.ExitFail, "TERMINAL", "RolledBack", false, false},
		{"invalid spec", 200, true, cmd.ExitUsage, "TERMINAL", "NotStarted", false, false},
		{"evicted then retried", 200, false, cmd.ExitOK, "SUCCEEDED", "Promoted", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			jr := checkSpinnakerExample(t, ex, map[string]string{"proxy-admin-token": adminToken})
			c := newCluster(t, tc.canaryStatus)
			spec := jr.spec
			spec["stable"].(map[string]any)["addresses"] = []any{c.stable.URL}
			dep := spec["deploy"].(map[string]any)
			dep["baseline"].(map[string]any)["addresses"] = []any{c.baseline.URL}
			dep["canary"].(map[string]any)["addresses"] = []any{c.canary.URL}
			spec["gateway"].(map[string]any)["admin"] = c.admin
			shorten(spec)
			// The spec's etcd is a real one on this machine, without TLS; a short lease, though not
			// etcd's minimum of 2 s: the runner (in this -race test process) confirms its leases every
			// third of the TTL, and on a loaded machine a 2 s lease ran out between two answers.
			srv := etcdtest.Start(t)
			if spec["state"].(map[string]any)["type"] != "etcd" {
				t.Fatal("the example's spec does not keep its state in etcd")
			}
			spec["state"] = map[string]any{"type": "etcd", "endpoints": []any{srv.Endpoint()}, "prefix": "/spinnaker", "leaseTTL": "6s"}
			if tc.breakSpec {
				spec["steps"] = []any{map[string]any{"weight": 150}}
			}
			dir := t.TempDir()
			specFile := filepath.Join(dir, "rollout.yaml")
			writeYAML(t, specFile, spec)
			args := setFlag(jr.args, "--spec", specFile)
			if flagValue(args, "--state-dir") != "" {
				args = setFlag(args, "--state-dir", filepath.Join(dir, "state"))
			}
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			go load(ctx, c.listen+"/", 300, 20000)

			var containerLog syncBuffer
			if tc.evicted {
				evict(t, args, jr.env, srv.Endpoint(), "/spinnaker", dig(spec, "service").(string))
			}
			code := canaryctl(t.Context(), args, jr.env, &containerLog, &containerLog)
			log := containerLog.String()
			if code != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantExit, log)
			}
			status, out, err := stageOutcome(code == 0, jr.propertyFile, log)
			if err != nil || status != tc.wantStatus {
				t.Fatalf("stage %s (%v), want %s\n%s", status, err, tc.wantStatus, log)
			}
			if out["phase"] != tc.wantPhase || out["promoted"] != tc.wantPromoted {
				t.Fatalf("outputs phase %v promoted %v, want %s %v\n%s", out["phase"], out["promoted"], tc.wantPhase, tc.wantPromoted, log)
			}
			if tc.breakSpec {
				if r, _ := out["reason"].(string); !strings.Contains(r, "weight") {
					t.Fatalf("reason %q does not name the bad field", r)
				}
				return
			}
			for ref := range refs {
				if ref == "reason" && tc.wantPromoted {
					continue // read only in the failure message
				}
				if _, ok := out[ref]; !ok {
					t.Errorf("the pipeline reads outputs.%s; the job's log does not provide it: %v", ref, out)
				}
			}
			if tc.evicted && !strings.Contains(log, "is recorded (") {
				t.Errorf("the retry did not continue the evicted attempt's run:\n%s", log)
			}
			if _, ok := out["score"].(float64); !ok {
				t.Errorf("outputs.score %v is not a number", out["score"])
			}
			st, err := c.px.State(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			// Every way out leaves no traffic on canary or baseline; a promotion makes canary the new stable.
			wantStable := c.stable.URL
			if tc.wantPromoted {
				wantStable = c.canary.URL
			}
			if st.Split.Canary != 0 || st.Split.Baseline != 0 || !slices.Equal(st.Upstreams["stable"], []string{wantStable}) {
				t.Errorf("gateway after the run: split %+v, stable %v, want 0/0 and %s", st.Split, st.Upstreams["stable"], wantStable)
			}
		})
	}
}

// jobName is the Job's name as Kubernetes labels its pods (Spinnaker's suffix included).
const jobName = "checkout-canary-x7k2p"

// TestHelperJobPod runs canaryctl as a separate process: the first attempt of the Job's pod.
func TestHelperJobPod(t *testing.T) {
	if os.Getenv("CANARYCTL_TEST_POD") != "1" {
		t.Skip("helper process")
	}
	var args []string
	_ = json.Unmarshal([]byte(os.Getenv("CANARYCTL_TEST_ARGS")), &args)
	os.Exit(cmd.Main(args))
}

// evict runs the job's container as a process until its rollout is judging the first step, then
// SIGKILLs it, as a node eviction or an OOM kill does.
func evict(t *testing.T, args []string, vars map[string]string, endpoint, prefix, service string) {
	t.Helper()
	a, _ := json.Marshal(args)
	pod := exec.Command(os.Args[0], "-test.run=^TestHelperJobPod$")
	pod.Env = append(os.Environ(), "CANARYCTL_TEST_POD=1", "CANARYCTL_TEST_ARGS="+string(a))
	for k, v := range vars {
		pod.Env = append(pod.Env, k+"="+v)
	}
	var out syncBuffer
	pod.Stdout, pod.Stderr = &out, &out
	if err := pod.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.Process.Kill(); _ = pod.Wait() })
	obs, err := rollout.OpenEtcdStore(rollout.EtcdStoreConfig{Endpoints: []string{endpoint}, Prefix: prefix, Service: service, LocalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := obs.LoadState()
		if err == nil && st.Phase == rollout.Analyzing && len(st.Intervals) > 0 {
			if st.RunID != jobName {
				t.Fatalf("the run is named %q, want the job's name %q", st.RunID, jobName)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first attempt never judged a step: %+v %v\n%s", st, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pod.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = pod.Wait()
}
