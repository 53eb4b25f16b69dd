package cmd

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProxyCmdInsecureAdminRefusesBrowsers runs `canaryctl proxy --admin-insecure` on ports the
// kernel picks (read back from the log), drives it with the client subcommands, and checks that
// a cross-site form POST and a DNS-rebound Host are refused while those subcommands work.
func TestProxyCmdInsecureAdminRefusesBrowsers(t *testing.T) {
	t.Parallel()
	stable, canary := named(t, "stable"), named(t, "canary")
	var logs syncBuffer
	e := &Env{
		Stdout: &syncBuffer{}, Stderr: &logs, Stdin: strings.NewReader(""),
		Getenv: func(string) string { return "" },
		Now:    time.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, e, []string{"proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--admin-insecure", "--stable", stable.URL, "--canary", canary.URL, "--canary-percent", "10"})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	adminRe := regexp.MustCompile(`msg="admin API listening" addr=(\S+)`)
	var admin string
	for deadline := time.Now().Add(10 * time.Second); admin == ""; time.Sleep(10 * time.Millisecond) {
		if m := adminRe.FindStringSubmatch(logs.String()); m != nil {
			admin = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the admin API did not come up: %s", logs.String())
		}
	}
	env := map[string]string{"CANARYCTL_PROXY_ADMIN": "http://" + admin}
	for _, tc := range []struct {
		name, host, origin, ctype string
		want                      int
	}{
		{"form POST from a foreign origin", "", "http://evil.example", "application/x-www-form-urlencoded", 403},
		{"form POST without Origin", "", "", "application/x-www-form-urlencoded", 415},
		{"JSON POST under a rebound name", "evil.example", "http://evil.example", "application/json", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+admin+"/v1/rollback", strings.NewReader("a=b"))
			req.Header.Set("Content-Type", tc.ctype)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if code, out, stderr := runProxyCmd(t.Context(), env, "split"); code != 0 || !strings.Contains(out, `"canaryPercent": 10`) {
		t.Fatalf("split after the refused calls: exit %d %q %s", code, out, stderr)
	}
	for _, sub := range [][]string{{"rollback"}, {"upstreams", "canary", canary.URL}, {"split", "--canary-percent", "5"}, {"promote"}} {
		if code, _, stderr := runProxyCmd(t.Context(), env, sub...); code != 0 {
			t.Fatalf("%v against --admin-insecure: exit %d %s", sub, code, stderr)
		}
	}
}
