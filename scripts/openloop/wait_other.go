//go:build !linux

package main

import "time"

// waitUntil blocks until at, with the runtime's timer: less exact than
// Linux's nanosleep(2), enough to run the load generator elsewhere.
func waitUntil(at time.Time) { time.Sleep(time.Until(at)) }
