//go:build !linux

package proxy

import (
	"io"
	"net"
)

// connIO is what the h1 loop and the upstream pool read and write nc through: raw descriptor I/O
// is used on Linux only (rawio_linux.go); elsewhere the net.Conn itself.
func connIO(nc net.Conn) io.ReadWriter { return nc }

// writeThenWait writes b to w (rawio_linux.go also waits for the answer there).
func writeThenWait(w io.Writer, b []byte, _ bool) error {
	_, err := w.Write(b)
	return err
}
