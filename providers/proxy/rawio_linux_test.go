//go:build linux

package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestRawIO: raw read(2)/write(2) keep net.Conn's semantics — a write larger than the socket
// buffers waits for room and arrives whole, deadlines end a waiting read with
// os.ErrDeadlineExceeded, a closed peer reads as io.EOF and a reset one fails writes.
func TestRawIO(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	rw := connIO(client)
	if _, ok := rw.(*rawIO); !ok {
		t.Fatalf("connIO of a TCP connection is %T, want *rawIO", rw)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: far beyond the socket buffers
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(server, int64(len(data))))
		got <- b
	}()
	if n, err := rw.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer read %d bytes, not the %d written", len(b), len(data))
	}

	// a read with nothing to read waits until the deadline
	_ = client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 16)
	if _, err := rw.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = client.SetReadDeadline(time.Time{})

	// data, then the peer's close
	if _, err := server.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = server.Close()
	all, err := io.ReadAll(rw)
	if string(all) != "hello" || err != nil {
		t.Fatalf("ReadAll = %q, %v; want hello, nil (io.EOF at the end)", all, err)
	}
	// writing to a closed peer fails (RST, then EPIPE) with the errno visible to errors.Is
	var werr error
	for range 20 {
		if _, werr = rw.Write([]byte("x")); werr != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("Write to a closed peer: %v, want EPIPE or ECONNRESET", werr)
	}
}

// TestWriteThenWait: the request is written whole and the answer is read after the wait, however
// fast it comes (a lost readiness would show as a read that times out); a write larger than the
// socket buffers still arrives whole; a peer that never answers ends the following Read at the
// deadline, and one that is gone makes it fail at once instead of waiting for the deadline.
func TestWriteThenWait(t *testing.T) {
	t.Parallel()
	t.Run("answers", func(t *testing.T) {
		t.Parallel()
		client, server := tcpPair(t)
		rw := connIO(client).(*rawIO)
		go func() { // echo each 8-byte request at once
			b := make([]byte, 8)
			for {
				if _, err := io.ReadFull(server, b); err != nil {
					return
				}
				if _, err := server.Write(b); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 8)
		for i := range 3000 {
			req := []byte(fmt.Sprintf("%08d", i))
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := writeThenWait(rw, req, i%2 == 1); err != nil {
				t.Fatalf("request %d: writeThenWait: %v", i, err)
			}
			if _, err := io.ReadFull(rw, buf); err != nil || !bytes.Equal(buf, req) {
				t.Fatalf("request %d: read %q, %v; want %q", i, buf, err, req)
			}
		}
	})
	t.Run("big", func(t *testing.T) {
		t.Parallel()
		client, server := tcpPair(t)
		data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: the write has to wait for room
		go func() {
			b, _ := io.ReadAll(io.LimitReader(server, int64(len(data))))
			_, _ = server.Write([]byte(fmt.Sprint(len(b))))
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := writeThenWait(connIO(client), data, false); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 16)
		n, err := connIO(client).Read(b)
		if err != nil || string(b[:n]) != fmt.Sprint(len(data)) {
			t.Fatalf("peer got %q bytes (%v), want %d", b[:n], err, len(data))
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		t.Parallel()
		client, server := tcpPair(t)
		_ = client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		rw := connIO(client)
		if err := writeThenWait(rw, []byte("ping"), false); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(server, b); err != nil || string(b) != "ping" {
			t.Fatalf("peer read %q, %v", b, err)
		}
		if _, err := rw.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after an unanswered request: %v, want os.ErrDeadlineExceeded", err)
		}
		// a deadline already past: the request still goes out, the Read reports the timeout
		if err := writeThenWait(rw, []byte("pong"), true); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, b); err != nil || string(b) != "pong" {
			t.Fatalf("peer read %q, %v", b, err)
		}
		if _, err := rw.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want os.ErrDeadlineExceeded", err)
		}
	})
	for _, input := range []struct{ name, what string }{{"half-closed idle peer", "FIN"}, {"stray bytes while idle", "bytes"}} {
		t.Run(input.name, func(t *testing.T) {
			// input that came while the connection was idle: its readiness is gone after the
			// reset, so only the peek (reused) sees it; nothing may be sent on such a connection
			t.Parallel()
			client, server := tcpPair(t)
			if input.what == "FIN" {
				_ = server.(*net.TCPConn).CloseWrite()
			} else if _, err := server.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // the input is in and the poller has seen it
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			rw := connIO(client)
			start := time.Now()
			if err := writeThenWait(rw, []byte("hello"), true); !errors.Is(err, errIdleInput) {
				t.Fatalf("writeThenWait on a reused connection with input waiting: %v, want errIdleInput", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("noticing the input took %v", d)
			}
			_ = client.Close()
			_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
			// (closing a socket with unread input resets the connection: ECONNRESET is an end too)
			if b, err := io.ReadAll(server); len(b) > 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
				t.Fatalf("peer read %q, %v: nothing may be sent on a connection with input waiting", b, err)
			}
		})
	}
	t.Run("peer gone", func(t *testing.T) {
		t.Parallel()
		client, server := tcpPair(t)
		_ = server.Close()
		time.Sleep(20 * time.Millisecond) // the FIN is in: a read now would see EOF at once
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		rw := connIO(client)
		start := time.Now()
		err := writeThenWait(rw, []byte("hello"), false)
		if err == nil {
			_, err = rw.Read(make([]byte, 8))
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("request to a closed peer: %v, want EOF, ECONNRESET or EPIPE", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("noticing the closed peer took %v", d)
		}
		_ = client.Close()
		if err := writeThenWait(rw, []byte("x"), true); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("writeThenWait on a closed connection: %v, want net.ErrClosed", err)
		}
	})
}

// pipeConn is a net.Conn over a pipe: a descriptor with a raw form that is not a socket.
type pipeConn struct {
	net.Conn // (unused methods)
	r, w     *os.File
}

func (c pipeConn) SyscallConn() (syscall.RawConn, error) { return c.r.SyscallConn() }

// TestRawIONotASocket: rawIO reads and writes with recvfrom(2)/sendto(2); on a descriptor that is
// not a socket (a syscall.Conn someone made of a pipe) it falls back to read(2)/write(2).
func TestRawIONotASocket(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	rd := newRawIO(pipeConn{r: r, w: w})
	if rd == nil {
		t.Fatal("newRawIO of a pipe: nil")
	}
	wc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wr := &rawIO{rc: wc}
	wr.readFn, wr.writeFn, wr.wtwFn = wr.readOnce, wr.writeOnce, wr.writeThenWaitOnce
	if n, err := wr.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write to a pipe = %d, %v; want 5, nil", n, err)
	}
	b := make([]byte, 16)
	if n, err := rd.Read(b); string(b[:n]) != "hello" || err != nil {
		t.Fatalf("Read from a pipe = %q, %v; want \"hello\", nil", b[:n], err)
	}
	if !rd.notSock || !wr.notSock {
		t.Errorf("notSock = %v (reader), %v (writer); want both set after ENOTSOCK", rd.notSock, wr.notSock)
	}
}
