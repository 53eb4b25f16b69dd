package cmd

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryctl/canaryctl/providers"
	"github.com/canaryctl/canaryctl/rollout"
)

// TestKongLogSecret: a fresh rollout gets a new secret, kept 0600 in its state directory; a resumed
// one (and the control commands) read the kept one.
func TestKongLogSecret(t *testing.T) {
	t.Parallel()
	store, err := rollout.OpenStore(rollout.StoreConfig{Root: t.TempDir(), Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	first, path, err := kongLogSecret(store, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || len(first) < 40 {
		t.Fatalf("secret file %s: %v, mode %v, secret length %d", path, err, fi.Mode(), len(first))
	}
	resumed, _, err := kongLogSecret(store, false)
	if err != nil || resumed != first {
		t.Fatalf("resume read a different secret (%v)", err)
	}
	next, _, err := kongLogSecret(store, true)
	if err != nil || next == first {
		t.Fatalf("a new rollout kept the old secret (%v)", err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != next {
		t.Fatal("the state directory does not hold the new secret")
	}
}

func TestStatusShowsRequestLogLosses(t *testing.T) {
	t.Parallel()
	st := &rollout.State{Service: "web", Phase: rollout.Analyzing, Intervals: []rollout.Interval{
		{Verdict: rollout.VerdictPass, Ingest: &providers.Ingest{RejectedPosts: 4}},
	}}
	out := formatStatus(st, true, 1, time.Now())
	if !strings.Contains(out, "log:       4 posts rejected (no or wrong Authorization header)") {
		t.Fatalf("status lacks the rejected posts:\n%s", out)
	}
}

// assertSecretKept: the rollout's kong-log secret is in its state directory's kong-log.secret (mode
// 0600) and nowhere else: not in the output, the state, the events or the logs.
func assertSecretKept(t *testing.T, stateDir, output string) {
	t.Helper()
	var secret string
	var others []string
	err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Name() == kongLogSecretFile {
			b, err := os.ReadFile(p)
			if fi, _ := d.Info(); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, mode %v; want mode 0600", p, err, fi.Mode())
			}
			secret = strings.TrimSpace(string(b))
			return nil
		}
		others = append(others, p)
		return nil
	})
	if err != nil || secret == "" {
		t.Fatalf("no kong-log secret kept under %s (%v)", stateDir, err)
	}
	if strings.Contains(output, secret) {
		t.Error("the kong-log secret was printed")
	}
	for _, p := range others {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), secret) {
			t.Errorf("the kong-log secret is in %s", p)
		}
	}
}
