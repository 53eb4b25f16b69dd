//go:build linux

package proxy

import (
	"bufio"
	"net"
	"syscall"
	"testing"

	"github.com/canaryctl/canaryctl/providers"
)

// TestStrayInjectorFindsItsOwnConnection: the kernel hands one local port to connections to
// different upstreams (an ephemeral port is shared whenever the 4-tuples differ). The load test's
// stray injector once told the proxy's end of an upstream connection by its local address alone,
// so it could take another upstream's idle connection for it and write the stray bytes while the
// connection itself carried the next request — where, by the protocol, they are that request's
// answer: "request 319 got the answer STRAY" in TestLoadSplitChangesRollbackPromote under load,
// with the proxy doing what it should. Here the two connections share a port deterministically
// (SO_REUSEADDR and an explicit bind, as Linux allows for connecting sockets); the injector must
// leave the busy one alone and find it once it is idle.
func TestStrayInjectorFindsItsOwnConnection(t *testing.T) {
	accepted := func(ln net.Listener) <-chan net.Conn {
		ch := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(ch)
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			ch <- c
		}()
		return ch
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return ln
	}
	lnStable, lnCanary := listen(), listen()
	p, err := New(Config{Upstreams: map[providers.Cohort][]string{
		"stable": {"http://" + lnStable.Addr().String()}, "canary": {"http://" + lnCanary.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	tab := p.table.Load()
	upStable, upCanary := tab.upstreams[iStable][0], tab.upstreams[iCanary][0]

	// the proxy's two connections, from one local port
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	dial := func(ln net.Listener) (*upConn, net.Conn) {
		ch := accepted(ln)
		nc, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		c, ok := <-ch
		if !ok {
			t.Fatal("accept failed")
		}
		uio := connIO(nc)
		return &upConn{nc: nc, br: bufio.NewReaderSize(uio, upReadBuf), rw: uio}, c
	}
	canaryConn, _ := dial(lnCanary)
	d.LocalAddr = canaryConn.nc.LocalAddr()
	stableConn, stableUpstreamEnd := dial(lnStable)
	if stableConn.nc.LocalAddr().String() != canaryConn.nc.LocalAddr().String() {
		t.Fatalf("local addresses %s and %s: the test needs them shared", stableConn.nc.LocalAddr(), canaryConn.nc.LocalAddr())
	}
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY"
	strays := &strayInjector{}
	strays.p.Store(p)

	// canary's connection idle in its pool, stable's in use (in no pool): nothing to inject
	upCanary.pool.put(canaryConn, p.now().UnixNano(), 8)
	strays.whileIdle(stableUpstreamEnd, stray)
	if strays.injected.Load() != 0 || strays.late.Load() != 0 || strays.skipped.Load() != 1 || peekInput(stableConn.nc) {
		t.Fatalf("stable's connection %s->%s is in use, yet the injector wrote stray bytes on it (%d injected, %d late, %d skipped): "+
			"it took canary's idle %s->%s for it", stableConn.nc.LocalAddr(), stableConn.nc.RemoteAddr(),
			strays.injected.Load(), strays.late.Load(), strays.skipped.Load(), canaryConn.nc.LocalAddr(), canaryConn.nc.RemoteAddr())
	}

	// stable's connection idle too: the stray goes to it, and is in its socket on return
	upStable.pool.put(stableConn, p.now().UnixNano(), 8)
	strays.whileIdle(stableUpstreamEnd, stray)
	if strays.injected.Load() != 1 || !peekInput(stableConn.nc) || peekInput(canaryConn.nc) {
		t.Fatalf("%d injected; input waiting on stable's connection %v, on canary's %v: want 1, true, false",
			strays.injected.Load(), peekInput(stableConn.nc), peekInput(canaryConn.nc))
	}
}
