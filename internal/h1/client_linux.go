//go:build linux

package h1

import (
	"net"
	"syscall"

	"stringsvc/internal/rawio"
)

// idleProbe tells whether the server said anything on an idle connection
// since its last answer: bytes (an answer too many, a 408 before it
// closed), its end of the stream, or a reset. Any of these means the
// connection must not carry another request.
//
// It costs one read(2) per reuse, which fails with EAGAIN when the
// connection is fine, made without the scheduler's system call
// bookkeeping (internal/rawio). Nothing cheaper knows: the poller does
// record that an idle socket became readable, but every RawConn.Read
// clears that mark before its callback runs (internal/sendwait), and a
// goroutine parked on each idle connection, as Transport keeps, costs
// more to wake and stop than the read.
type idleProbe struct {
	raw   syscall.RawConn       // nil over TLS
	step  func(fd uintptr) bool // bound once: a probe allocates nothing
	b     [1]byte
	errno syscall.Errno
}

func (p *idleProbe) init(rw net.Conn) {
	if rc, ok := rw.(*rawio.Conn); ok {
		p.raw = rc.Raw()
		p.step = p.read
	}
}

// quiet reports whether nothing can be read from the connection. A byte
// it finds is consumed: the connection is closed anyway.
func (p *idleProbe) quiet() bool {
	if p.raw == nil {
		// TLS: a TLS 1.3 server may send session tickets while the
		// connection idles, so readable bytes prove nothing. Only the
		// check that nothing followed the last answer in the buffer
		// applies (answerReader.read).
		return true
	}
	p.errno = 0
	if err := p.raw.Read(p.step); err != nil {
		return false
	}
	return p.errno == syscall.EAGAIN
}

func (p *idleProbe) read(fd uintptr) bool {
	for {
		_, errno := rawio.Read(fd, p.b[:])
		if errno != syscall.EINTR {
			p.errno = errno // 0: a byte or the end of the stream
			return true
		}
	}
}
