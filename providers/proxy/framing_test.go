package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// recordingUpstream answers every request with "ok" and keeps the raw bytes it received.
type recordingUpstream struct {
	url string
	mu  sync.Mutex
	raw bytes.Buffer
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.url = rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		tee := bufio.NewReader(io.TeeReader(br, writerFunc(func(b []byte) (int, error) {
			u.mu.Lock()
			defer u.mu.Unlock()
			return u.raw.Write(b)
		})))
		for {
			req, err := http.ReadRequest(tee)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return u
}

func (u *recordingUpstream) received() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestContentLengthWithTransferEncoding (issue 15, item 3): a request with both Content-Length and
// Transfer-Encoding, followed by bytes a front proxy going by the length would take for the body.
// RFC 9112 6.3: the connection must be closed after answering; nginx answers 400 and closes. The h1
// front does the same; the net/http front cannot see the Content-Length (net/http drops it), goes by
// Transfer-Encoding alone (which 6.3 allows) and closes the connection after the answer. On neither
// does the smuggled request reach the upstream.
func TestContentLengthWithTransferEncoding(t *testing.T) {
	t.Parallel()
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			up := newRecordingUpstream(t)
			_, srv := startProxyFront(t, stableOnly(up.url), f.netHTTPOnly)
			got := sendRaw(t, srv.URL, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", false)
			// sendRaw reads to the end of stream: it returns only because the proxy closed
			if !f.netHTTPOnly && !strings.HasPrefix(got, "HTTP/1.1 400 ") {
				t.Errorf("h1 front answered %q, want 400 (nginx)", got)
			}
			if strings.Count(got, "HTTP/1.1 ") != 1 {
				t.Errorf("answers %q: want exactly one, then the connection closed", got)
			}
			if r := up.received(); strings.Contains(r, "smuggled") {
				t.Fatalf("the smuggled request reached the upstream: %q", r)
			}
		})
	}
}
