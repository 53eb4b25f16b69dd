package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestH1LeadingEmptyLines: empty lines before a request line are ignored, as nginx ignores them
// (RFC 9112 2.2: a server SHOULD ignore at least one CRLF before the request line), also before a
// request the h1 loop hands to net/http (a POST), which would answer them with 400 otherwise; the
// connection stays usable. Empty lines alone still end at ReadHeaderTimeout.
func TestH1LeadingEmptyLines(t *testing.T) {
	t.Parallel()
	up := newScriptedUpstream(t, map[string]string{
		"/a":    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
		"/form": "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nform",
	})
	addr, _ := serveFor(t, stableOnly(up.url), ServeConfig{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second})
	for _, tc := range []struct {
		name, prefix string
	}{
		{"crlf", "\r\n"},
		{"two crlf", "\r\n\r\n"},
		{"bare lf", "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := dialRaw(t, "http://"+addr)
			if _, err := io.WriteString(rc.c, tc.prefix+"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if resp, body := rc.read("GET"); resp.StatusCode != http.StatusOK || body != "a" {
				t.Fatalf("GET after %q: %d %q, want 200 \"a\"", tc.prefix, resp.StatusCode, body)
			}
			if _, err := io.WriteString(rc.c, tc.prefix+"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"); err != nil {
				t.Fatal(err)
			}
			if resp, body := rc.read("POST"); resp.StatusCode != http.StatusOK || body != "form" {
				t.Fatalf("POST after %q (handed to net/http): %d %q, want 200 \"form\"", tc.prefix, resp.StatusCode, body)
			}
		})
	}
	t.Run("empty lines only", func(t *testing.T) {
		t.Parallel()
		rc := dialRaw(t, "http://"+addr)
		start := time.Now()
		if _, err := io.WriteString(rc.c, "\r\n\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc.br); err != nil {
			t.Fatalf("connection ended with %v, want a close by the server", err)
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Fatalf("closed after %v, want about ReadHeaderTimeout (300 ms)", waited)
		}
	})
}
