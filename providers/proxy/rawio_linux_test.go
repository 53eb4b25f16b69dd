//go:build linux

package proxy

import (
	"bytes"
	"errors"
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
