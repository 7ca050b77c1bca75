//go:build !linux

package rawio

import "syscall"

// supported says raw calls are made on this system: only Linux's are
// written, so New returns connections as they are.
const supported = false

// Read is never called where raw calls are not supported; it fails.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

// Write is never called where raw calls are not supported; it fails.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
