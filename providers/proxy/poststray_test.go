package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// TestPostsAfterStrayBytesAreSentOnce: POSTs go through ReverseProxy's transport, which never
// sends a request with a body twice. An upstream that answers one POST with more bytes than its
// Content-Length (in the same write, and again while idle) costs that connection; every later
// POST gets its own answer and reaches the upstream exactly once (nginx: proxy_next_upstream
// leaves non-idempotent requests alone). Both fronts.
func TestPostsAfterStrayBytesAreSentOnce(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			seen := map[string]int{}
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if _, err := io.Copy(io.Discard, req.Body); err != nil {
						return
					}
					mu.Lock()
					seen[req.URL.Path]++
					mu.Unlock()
					body := "for " + req.URL.Path
					extra := ""
					if req.URL.Path == "/late" {
						extra = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY" // under-counted answer
					}
					if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s%s", len(body), body, extra); err != nil {
						return
					}
				}
			})
			_, srv := startProxyFront(t, stableOnly(up), f.netHTTPOnly)
			rc := dialRaw(t, srv.URL)
			for _, who := range []string{"late", "alice", "bob", "carol"} {
				resp, body := rc.do("POST", "/"+who, "", "payload")
				if resp.StatusCode != http.StatusOK || body != "for /"+who {
					t.Fatalf("POST /%s answered %d %q, want its own answer", who, resp.StatusCode, body)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, who := range []string{"/late", "/alice", "/bob", "/carol"} {
				if seen[who] != 1 {
					t.Errorf("POST %s reached the upstream %d times, want once", who, seen[who])
				}
			}
		})
	}
}
