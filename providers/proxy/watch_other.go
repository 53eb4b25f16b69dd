//go:build !unix

package proxy

import "net"

// watchClient is a no-op where peeking at a socket is not available: a client that leaves is
// noticed when its answer is written.
func watchClient(net.Conn, func()) (stop func()) { return func() {} }

// peekInput is false where peeking at a socket is not available.
func peekInput(any) bool { return false }
