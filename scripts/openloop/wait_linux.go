//go:build linux

package main

import (
	"syscall"
	"time"
)

// waitUntil blocks the calling thread until at. nanosleep(2) on the thread
// wakes closer to at than the runtime's timers, which keeps the open
// loop's send times honest at thousands of requests per second.
func waitUntil(at time.Time) {
	for d := time.Until(at); d > 0; d = time.Until(at) {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		syscall.Nanosleep(&ts, nil) // an early wake (EINTR) just loops
	}
}
