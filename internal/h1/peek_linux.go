//go:build linux

package h1

import "syscall"

// peekClosed looks at fd without taking a byte: wait is true while nothing
// has arrived (park on the poller), closed when the peer closed or reset
// the connection.
func peekClosed(fd uintptr, one []byte) (wait, closed bool) {
	n, _, err := syscall.Recvfrom(int(fd), one, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return true, false
	case err != nil || n == 0:
		return false, true
	}
	return false, false
}
