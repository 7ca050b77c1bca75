//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// resume sends SIGCONT, so that a process a test stopped can die.
func resume(p *os.Process) { p.Signal(syscall.SIGCONT) }
