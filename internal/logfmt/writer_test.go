package logfmt

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"stringsvc/internal/testenv"
)

func TestLogWriterCloseLosesNothing(t *testing.T) {
	t.Parallel()
	var out testenv.Buffer
	// An interval no test outlives: only a full buffer and Close write out.
	lw := NewWriter(&out, time.Hour)
	var want strings.Builder
	for i := range 5000 { // about 4 times the writer's 64 KiB buffer
		line := fmt.Sprintf("msg=line i=%d\n", i)
		want.WriteString(line)
		if n, err := lw.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", line, n, err, len(line))
		}
	}
	if err := lw.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("after Close, got %d bytes (%d lines); want %d bytes (%d lines)",
			len(got), strings.Count(got, "\n"), want.Len(), strings.Count(want.String(), "\n"))
	}

	// Written after Close: accepted, out at the next Flush.
	late := "msg=late\n"
	if _, err := lw.Write([]byte(late)); err != nil {
		t.Fatalf("Write after Close = %v; want nil", err)
	}
	if err := lw.Flush(); err != nil {
		t.Fatalf("Flush() = %v; want nil", err)
	}
	if got := out.String(); !strings.HasSuffix(got, late) {
		t.Errorf("after Write and Flush past Close, output ends %q; want %q", got[max(0, len(got)-20):], late)
	}
}

// TestLogWriterFlushesInBackground checks that a line reaches the underlying
// writer without Close, within a deadline far above the interval.
func TestLogWriterFlushesInBackground(t *testing.T) {
	t.Parallel()
	var out testenv.Buffer
	lw := NewWriter(&out, 5*time.Millisecond)
	t.Cleanup(func() {
		if err := lw.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	line := "msg=hello\n"
	if _, err := lw.Write([]byte(line)); err != nil {
		t.Fatalf("Write(%q) = %v; want nil", line, err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for out.String() != line {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("output after 10s = %q; want %q", out.String(), line)
		}
	}
}

func TestLogWriterConcurrentLinesDoNotInterleave(t *testing.T) {
	t.Parallel()
	var out testenv.Buffer
	lw := NewWriter(&out, time.Millisecond) // flushes race with the writers
	logger := log.NewLogfmtLogger(lw)
	const writers, perWriter = 8, 300
	payload := strings.Repeat("x", 200) // lines long enough to straddle buffer flushes
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := logger.Log("writer", w, "i", i, "payload", payload); err != nil {
					t.Errorf("Log() = %v; want nil", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}

	want := make(map[string]bool, writers*perWriter)
	for w := range writers {
		for i := range perWriter {
			want[fmt.Sprintf("writer=%d i=%d payload=%s", w, i, payload)] = true
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*perWriter {
		t.Errorf("got %d lines; want %d", len(lines), writers*perWriter)
	}
	for _, line := range lines {
		if !want[line] {
			t.Fatalf("line %q is not one that was logged (interleaved or duplicated)", line)
		}
		delete(want, line)
	}
	if len(want) > 0 {
		t.Errorf("%d lines missing", len(want))
	}
}
