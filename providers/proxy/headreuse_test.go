package proxy

import (
	"net/http"
	"testing"
)

// TestHeadAnswerKeepsUpstreamConnection: an answer to HEAD carries the Content-Length a GET's body
// would have (RFC 9110 9.3.2, 8.6) and no body, so the upstream connection stays reusable after
// it, as with nginx and Go's http.Transport (both fronts). Stray bytes a broken upstream sends
// after such an answer are the idle-input invariant's business (TestHeadAnswerWithStrayBody).
func TestHeadAnswerKeepsUpstreamConnection(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up := newScriptedUpstream(t, map[string]string{
				"/doc": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
				"/old": "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n",
			})
			_, srv := startProxyFront(t, stableOnly(up.url), f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			for i, m := range []struct{ method, path, want string }{
				{"HEAD", "/doc", ""}, {"GET", "/doc", "hello"}, {"HEAD", "/doc", ""}, {"GET", "/old", ""}, {"GET", "/doc", "hello"},
			} {
				resp, body := rc.do(m.method, m.path, "", "")
				if resp.StatusCode >= 400 || body != m.want {
					t.Fatalf("request %d (%s %s): %d %q, want %q", i, m.method, m.path, resp.StatusCode, body, m.want)
				}
				if m.method == http.MethodHead && resp.ContentLength != 5 {
					t.Errorf("HEAD %s: Content-Length %d, want 5", m.path, resp.ContentLength)
				}
			}
			if n := up.conns.Load(); n != 1 {
				t.Errorf("%d upstream connections for 5 requests, want 1: a HEAD or 304 answer with Content-Length closed its connection", n)
			}
		})
	}
}
