package cmd

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRunSecretsFromEnvironment: the external proxy's admin token from CANARYCTL_ADMIN_TOKEN (the
// variable `canaryctl proxy` reads) and a webhook URL from the variable named by urlEnv.
func TestRunSecretsFromEnvironment(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var posts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	w := newWorld(t)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go w.load(ctx, 200, 3000)
	spec := w.spec(t, fastSteps+"notifications:\n  webhooks:\n    - {urlEnv: CANARY_HOOK_URL, on: [promoted, rolledBack]}\n")
	code, _, stderr := rtRun(t.Context(), map[string]string{"CANARYCTL_ADMIN_TOKEN": rtToken, "CANARY_HOOK_URL": hook.URL + "/secret-path"},
		"run", "--spec", spec, "--state-dir", w.stateDir())
	// The verdict does not matter here (a loaded machine may make the canary look slow); that the
	// rollout ran through the proxy and told the webhook does.
	if code != ExitOK && code != ExitFail {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "step 1/2") {
		t.Fatalf("the rollout did not run:\n%s", stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || !strings.Contains(posts[0], "shop") {
		t.Fatalf("webhook posts %q, want one about shop", posts)
	}
}

func TestRunSecretErrorsBeforeTrafficMoves(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, extra string
		vars        map[string]string
		want        string
	}{
		{"webhook variable empty", "notifications:\n  webhooks:\n    - {urlEnv: CANARY_HOOK_URL}\n",
			map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken}, "notifications.webhooks[0].urlEnv: $CANARY_HOOK_URL does not hold an http(s) URL"},
		{"webhook url and urlEnv", "notifications:\n  webhooks:\n    - {url: 'http://127.0.0.1:1/x', urlEnv: CANARY_HOOK_URL}\n",
			map[string]string{"CANARYCTL_PROXY_TOKEN": rtToken, "CANARY_HOOK_URL": "http://127.0.0.1:1/y"}, "set either url or urlEnv"},
		{"no admin token", "", nil, "CANARYCTL_PROXY_TOKEN (or CANARYCTL_ADMIN_TOKEN)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			before := w.pxState(t)
			code, out, stderr := rtRun(t.Context(), tc.vars, "run", "--spec", w.spec(t, fastSteps+tc.extra), "--state-dir", w.stateDir(), "--spinnaker")
			if code != ExitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(out, `"phase":"NotStarted"`) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 naming %q", code, out, stderr, tc.want)
			}
			if after := w.pxState(t); after != before {
				t.Fatalf("gateway changed: %s -> %s", before, after)
			}
		})
	}
}
