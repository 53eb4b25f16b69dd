//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// watchClient calls gone (at most once) when the client closes or resets nc, or nc is closed here,
// without consuming anything it sends: it waits for nc to become readable and peeks. Pipelined data means the
// client is still there and ends the watch. stop ends the watch and waits for it.
func watchClient(nc net.Conn, gone func()) (stop func()) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
				return false // nothing yet: wait until readable (or the deadline stop sets)
			case err != nil || n == 0:
				gone() // reset, or an orderly close (EOF)
			}
			return true
		})
		if errors.Is(err, net.ErrClosed) {
			gone() // closed on this side (a forced shutdown): nobody is left to answer
		}
	}()
	return func() {
		_ = nc.SetReadDeadline(time.Unix(1, 0)) // wakes the wait
		<-done
		_ = nc.SetReadDeadline(time.Time{})
	}
}

// peekInput reports whether w (a socket) has input waiting — bytes, an end of stream or an error —
// without consuming it; false when w has no descriptor.
func peekInput(w any) bool {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		pending = !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
	})
	return pending
}
