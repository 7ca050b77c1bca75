package sendwait_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"stringsvc/internal/sendwait"
)

// pair returns a client connection to a server on 127.0.0.1 that answers
// each line it reads with the same line, upper-cased, unless the line is
// "silent\n".
func pair(t *testing.T) *net.TCPConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line != "silent\n" {
				c.Write([]byte("ANSWER " + line))
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func newWriter(t *testing.T, c *net.TCPConn) *sendwait.Writer {
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return sendwait.New(raw)
}

func TestWriteAndWaitReturnsWhenTheAnswerIsThere(t *testing.T) {
	c := pair(t)
	w := newWriter(t, c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang fails the test, not the run
	br := bufio.NewReader(c)
	for _, msg := range []string{"one\n", "two\n", "three\n"} {
		thenCalled := false
		n, err := w.WriteAndWait([]byte(msg), func() bool { thenCalled = true; return true })
		if err != nil || n != len(msg) {
			t.Fatalf("WriteAndWait(%q) = %d, %v; want %d, nil", msg, n, err, len(msg))
		}
		if !thenCalled {
			t.Errorf("WriteAndWait(%q) did not call then after the write", msg)
		}
		if br.Buffered() != 0 {
			t.Fatalf("buffered bytes before the read")
		}
		got, err := br.ReadString('\n')
		if want := "ANSWER " + msg; err != nil || got != want {
			t.Fatalf("answer = %q, %v; want %q", got, err, want)
		}
	}
}

func TestWriteAndWaitHonoursTheReadDeadline(t *testing.T) {
	c := pair(t)
	w := newWriter(t, c)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := w.WriteAndWait([]byte("silent\n"), nil)
	if n != len("silent\n") || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteAndWait with no answer = %d, %v; want all written and a deadline error", n, err)
	}
}

func TestWriteAndWaitWithoutWaiting(t *testing.T) {
	c := pair(t)
	w := newWriter(t, c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// then says no: the call returns right after the write, with the
	// silent message there is nothing to wait for.
	n, err := w.WriteAndWait([]byte("silent\n"), func() bool { return false })
	if err != nil || n != len("silent\n") {
		t.Fatalf("WriteAndWait = %d, %v; want all written, nil", n, err)
	}
}

func TestWriteAndWaitOnAClosedConnection(t *testing.T) {
	c := pair(t)
	w := newWriter(t, c)
	c.Close()
	if _, err := w.WriteAndWait([]byte("one\n"), nil); err == nil {
		t.Fatal("WriteAndWait on a closed connection succeeded")
	}
}
