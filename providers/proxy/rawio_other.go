//go:build !linux

package proxy

import (
	"io"
	"net"
	"time"
)

// connIO is what the h1 loop and the upstream pool read and write nc through: raw descriptor I/O
// is used on Linux only (rawio_linux.go); elsewhere the net.Conn itself.
func connIO(nc net.Conn) io.ReadWriter { return nc }

// clientIO is what the h1 loop reads and writes a client connection through: a write waits at
// most send for the client to take it (0: no limit).
func clientIO(nc net.Conn, send time.Duration) io.ReadWriter {
	if send > 0 {
		return &sendConn{Conn: nc, timeout: send}
	}
	return nc
}

// writeThenWait writes b to w (rawio_linux.go also waits for the answer there); on a reused
// connection with input already there (bytes or an end of stream) it writes nothing and returns
// errIdleInput.
func writeThenWait(w io.Writer, b []byte, reused bool) error {
	if reused && peekInput(w) {
		return errIdleInput
	}
	_, err := w.Write(b)
	return err
}
