//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// rawIO reads and writes a socket with raw recvfrom(2)/sendto(2) calls on its non-blocking
// descriptor, waiting on Go's poller only when a call would block (EAGAIN), so deadlines work as
// on the net.Conn itself.
//
// Why: a syscall made through the runtime's entersyscall is one sysmon may take the P away from
// when it lasts over 20 µs — and a loopback write often does, because the woken peer runs first on
// the way out of the call. With one P (a pinned core) that hand-off costs thread switches and keeps
// sysmon waking every few tens of µs (8% of the proxy's CPU in bench/RESULTS.md). A read or write on
// a non-blocking socket never blocks, so it need not be announced to the scheduler.
type rawIO struct {
	rc syscall.RawConn
	// nc and send: when send is set, a write that has to wait for room waits at most send between
	// two writes that make progress (a client connection: nginx's send_timeout); the deadline is
	// set only then, so writes that do not wait cost nothing more.
	nc   net.Conn
	send time.Duration

	// The callbacks given to rc and their state live here, made once per connection: a closure
	// made per call, with the variables it captures, would be three or four allocations per
	// request. A connection has at most one read and one write (or writeThenWait) at a time.
	readFn, writeFn, wtwFn func(fd uintptr) bool
	rb                     []byte
	rn                     int
	rerrno                 syscall.Errno
	wb                     []byte
	wdone, warmedAt        int
	werrno                 syscall.Errno
	called, wrote, pending bool
	reused                 bool
	// notSock: the descriptor is not a socket (recvfrom/sendto said ENOTSOCK): read(2)/write(2).
	notSock bool
}

// newRawIO returns a reader/writer for nc, or nil when nc has no raw descriptor.
func newRawIO(nc net.Conn) *rawIO {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc}
	r.readFn, r.writeFn, r.wtwFn = r.readOnce, r.writeOnce, r.writeThenWaitOnce
	return r
}

// The socket calls are recvfrom(2) and sendto(2) rather than read(2) and write(2): on a socket they
// do the same without the VFS layer's work around each call (new_sync_read's kiocb, rw_verify_area,
// fsnotify and I/O accounting): about 40 ns less per call here, on four or five calls per request.
// sendto also takes MSG_NOSIGNAL: a write to a connection the peer has reset returns EPIPE without
// raising SIGPIPE (which the Go runtime would catch and ignore).

// recvFD reads into b (not empty) with one recvfrom(2), or read(2) when notSock.
func recvFD(fd uintptr, b []byte, notSock bool) (int, syscall.Errno) {
	var m uintptr
	var e syscall.Errno
	if notSock {
		m, _, e = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	} else {
		m, _, e = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	}
	return int(m), e
}

// sendFD writes b (not empty) with one sendto(2), or write(2) when notSock.
func sendFD(fd uintptr, b []byte, notSock bool) (int, syscall.Errno) {
	var m uintptr
	var e syscall.Errno
	if notSock {
		m, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	} else {
		m, _, e = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
	}
	return int(m), e
}

func (r *rawIO) readOnce(fd uintptr) bool {
	for {
		m, e := recvFD(fd, r.rb, r.notSock)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		case syscall.ENOTSOCK:
			if !r.notSock {
				r.notSock = true
				continue
			}
		}
		r.rn, r.rerrno = m, e
		return true
	}
}

func (r *rawIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.rb, r.rn, r.rerrno = b, 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.rn, r.rerrno
	r.rb = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// writeFD writes b[*done:] to the non-blocking fd, advancing *done, until all of it is written, the
// socket is full (full), or the write fails (errno). *notSock is set when fd is no socket.
func writeFD(fd uintptr, b []byte, done *int, notSock *bool) (full bool, errno syscall.Errno) {
	for *done < len(b) {
		m, e := sendFD(fd, b[*done:], *notSock)
		switch e {
		case 0:
			*done += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true, 0
		case syscall.ENOTSOCK:
			if *notSock {
				return false, e
			}
			*notSock = true
		default:
			return false, e
		}
	}
	return false, 0
}

func (r *rawIO) writeOnce(fd uintptr) bool {
	var full bool
	full, r.werrno = writeFD(fd, r.wb, &r.wdone, &r.notSock)
	if full && r.send > 0 && r.wdone != r.warmedAt {
		// (re)arm the send timeout for the wait that follows: the peer has taken what came before
		_ = r.nc.SetWriteDeadline(time.Now().Add(r.send))
		r.warmedAt = r.wdone
	}
	return !full // a full socket: wait until writable
}

func (r *rawIO) Write(b []byte) (int, error) {
	r.wb, r.wdone, r.warmedAt, r.werrno = b, 0, -1, 0
	err := r.rc.Write(r.writeFn)
	done, errno := r.wdone, r.werrno
	if r.warmedAt >= 0 {
		_ = r.nc.SetWriteDeadline(time.Time{})
	}
	r.wb = nil
	switch {
	case err != nil:
		return done, err
	case errno != 0:
		return done, os.NewSyscallError("write", errno)
	}
	return done, nil
}

// writeThenWait writes all of b and then waits until the socket is readable, without the read
// that would find nothing in between: it is for a request whose answer cannot be there yet (the
// peer has not seen the request), where read-then-wait costs a read(2) that fails with EAGAIN.
//
// The write is made inside the read operation, after the poller's read readiness has been
// reset, so the answer's readiness cannot be lost: it arrives after the reset and either wakes the
// wait or marks the descriptor ready for it. (Waiting first without a write in between could
// sleep through data whose readiness was consumed earlier.) A write that would block, or a wait
// that fails (deadline, close), returns early: the caller's next Read does the usual
// read-then-wait and reports the condition, so the only error returned is the write's.
//
// The reset also drops a readiness the poller saw before it: bytes or a FIN that came while a
// pooled connection sat idle. So on a reused connection (reused set) a non-consuming peek first
// looks for such input, and when there is any nothing is written and errIdleInput is returned: the
// caller closes the connection and sends the request on a new one. An end of stream is a stale
// connection; bytes are worse — an answer nobody asked for (stray bytes after a badly framed
// answer), which must never be read as the answer to this request (nginx and Go's http.Transport
// likewise close a connection that receives data while idle). The peek is one recvfrom(2) per
// reused connection: the price of that guarantee (bench/RESULTS.md).
func (r *rawIO) writeThenWait(b []byte, reused bool) error {
	r.wb, r.wdone, r.werrno, r.called, r.wrote, r.pending, r.reused = b, 0, 0, false, false, false, reused
	_ = r.rc.Read(r.wtwFn)
	done, errno, called, pending := r.wdone, r.werrno, r.called, r.pending
	r.wb = nil
	switch {
	case pending:
		return errIdleInput
	case errno != 0:
		return os.NewSyscallError("write", errno)
	case !called || done < len(b):
		_, err := r.Write(b[done:])
		return err
	}
	return nil
}

func (r *rawIO) writeThenWaitOnce(fd uintptr) bool {
	if r.wrote {
		return true // readable (or a spurious wake-up: the next Read waits again)
	}
	r.called = true
	if r.reused {
		var one [1]byte
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if r.pending = e != syscall.EAGAIN && e != syscall.EINTR; r.pending {
			return true // data, EOF or an error: nothing is sent on this connection
		}
	}
	var full bool
	if full, r.werrno = writeFD(fd, r.wb, &r.wdone, &r.notSock); full || r.werrno != 0 {
		return true // no room (finish with Write, which waits for room), or an error
	}
	r.wrote = true
	return false // wait for the answer
}

// writeThenWait writes b to w; on a raw socket it also waits for an answer (rawIO.writeThenWait).
// reused says that the connection comes from the pool: input already there is refused (errIdleInput).
func writeThenWait(w io.Writer, b []byte, reused bool) error {
	if r, ok := w.(*rawIO); ok {
		return r.writeThenWait(b, reused)
	}
	if reused && peekInput(w) {
		return errIdleInput
	}
	_, err := w.Write(b)
	return err
}

// connIO is what the upstream pool reads and writes nc through.
func connIO(nc net.Conn) io.ReadWriter {
	if r := newRawIO(nc); r != nil {
		return r
	}
	return nc
}

// clientIO is what the h1 loop reads and writes a client connection through: a write waits at
// most send for the client to take more of its answer (0: no limit).
func clientIO(nc net.Conn, send time.Duration) io.ReadWriter {
	if r := newRawIO(nc); r != nil {
		r.nc, r.send = nc, send
		return r
	}
	if send > 0 {
		return &sendConn{Conn: nc, timeout: send}
	}
	return nc
}
