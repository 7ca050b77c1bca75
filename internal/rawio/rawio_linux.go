//go:build linux

package rawio

import (
	"syscall"
	"unsafe"
)

// supported says raw calls are made on this system.
const supported = true

// Read is read(2) on fd without the scheduler's system call bookkeeping:
// for a non-blocking descriptor only.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { return rawCall(syscall.SYS_READ, fd, p) }

// Write is write(2) on fd without the scheduler's system call bookkeeping:
// for a non-blocking descriptor only.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { return rawCall(syscall.SYS_WRITE, fd, p) }

// rawCall makes read(2) or write(2) on fd and p.
func rawCall(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
