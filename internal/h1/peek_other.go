//go:build !linux

package h1

// peekClosed is never called outside Linux: there conns get no raw
// connection (internal/rawio), so no disconnect watch runs.
func peekClosed(uintptr, []byte) (wait, closed bool) { return false, false }
