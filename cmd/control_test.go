package cmd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/canaryctl/canaryctl/rollout"
)

func TestControlCommandsCompleteAndReject(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, svc := range []string{"cart", "shop"} {
		s, err := rollout.OpenStore(rollout.StoreConfig{Root: dir, Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveState(&rollout.State{SchemaVersion: rollout.StateSchemaVersion, Service: svc, Phase: rollout.Promoted, Reason: "done"}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := rtRun(t.Context(), nil, "__complete", "abort", "--state-dir", dir, "")
	if code != 0 || !strings.Contains(out, "cart\nshop\n") {
		t.Errorf("completion: %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--state-dir", dir}, ExitUsage, "holds several rollouts (cart, shop); name the SERVICE"},
		{[]string{"pause", "nope", "--state-dir", dir}, ExitUsage, "no rollout of nope"},
		{[]string{"resume", "Bad Name", "--state-dir", dir}, ExitUsage, "not a service name"},
		{[]string{"promote", "shop", "--state-dir", dir}, ExitError, "already ended Promoted: done"},
		{[]string{"status", "--state-dir", filepath.Join(dir, "none")}, ExitUsage, "no rollouts in state directory"},
		{[]string{"status", "shop", "-o", "yaml", "--state-dir", dir}, ExitUsage, "use text or json"},
	} {
		code, _, stderr := rtRun(t.Context(), nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d stderr %q, want %d %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	code, out, _ = rtRun(t.Context(), nil, "status", "shop", "-o", "json", "--state-dir", dir)
	if st, err := rollout.DecodeState([]byte(out)); code != 0 || err != nil || st.Phase != rollout.Promoted {
		t.Errorf("status -o json: %d %v %q", code, err, out)
	}
	code, out, _ = rtRun(t.Context(), nil, "status", "cart", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "phase:     Promoted") || !strings.Contains(out, "runner:    none (ended") {
		t.Errorf("status text: %d\n%s", code, out)
	}
}
