package rawio_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"stringsvc/internal/rawio"
)

// pair returns both ends of a loopback TCP connection, the client's wrapped.
func pair(t *testing.T) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	client = rawio.New(c)
	if _, ok := client.(*rawio.Conn); !ok {
		t.Fatalf("New(%T) = %T, want *rawio.Conn", c, client)
	}
	return client, s.(*net.TCPConn)
}

func TestReadWrite(t *testing.T) {
	c, s := pair(t)
	// The reader waits on the poller: nothing is there yet.
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil {
			t.Error(err)
		}
		got <- buf[:n]
	}()
	time.Sleep(10 * time.Millisecond) // let it park; the test holds without
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "hello" {
		t.Fatalf("Read = %q, want hello", b)
	}
	if n, err := c.Write([]byte("world")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "world" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

// A write larger than the socket buffers waits for room, as net.Conn's does.
func TestWriteWaitsForRoom(t *testing.T) {
	c, s := pair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<21) // 32 MiB: more than loopback buffers hold
	done := make(chan error, 1)
	go func() {
		n, err := c.Write(big)
		if n != len(big) && err == nil {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the buffers fill; the test holds without
	got, err := io.ReadAll(io.LimitReader(s, int64(len(big))))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, not what was written", len(got))
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(c net.Conn, s *net.TCPConn)
		op    func(c net.Conn) error
		is    error
	}{
		{
			name:  "peer closed: EOF",
			setup: func(_ net.Conn, s *net.TCPConn) { s.Close() },
			op:    func(c net.Conn) error { _, err := c.Read(make([]byte, 8)); return err },
			is:    io.EOF,
		},
		{
			name:  "read deadline",
			setup: func(c net.Conn, _ *net.TCPConn) { c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) },
			op:    func(c net.Conn) error { _, err := c.Read(make([]byte, 8)); return err },
			is:    os.ErrDeadlineExceeded,
		},
		{
			name:  "closed here",
			setup: func(c net.Conn, _ *net.TCPConn) { c.Close() },
			op:    func(c net.Conn) error { _, err := c.Write([]byte("x")); return err },
			is:    net.ErrClosed,
		},
		{
			name: "reset by the peer",
			setup: func(_ net.Conn, s *net.TCPConn) {
				s.SetLinger(0) // close with RST
				s.Close()
				time.Sleep(20 * time.Millisecond) // the RST crosses loopback
			},
			op: func(c net.Conn) error { _, err := c.Read(make([]byte, 8)); return err },
			is: syscall.ECONNRESET,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := pair(t)
			tt.setup(c, s)
			err := tt.op(c)
			if !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want one that is %v", err, tt.is)
			}
			if tt.is == io.EOF {
				return // io.EOF comes bare, as from net.Conn
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || (oe.Op != "read" && oe.Op != "write") {
				t.Fatalf("error %#v, want a *net.OpError for read or write", err)
			}
			if ne, ok := err.(net.Error); tt.is == os.ErrDeadlineExceeded && (!ok || !ne.Timeout()) {
				t.Fatalf("error %v is not a timeout", err)
			}
		})
	}
}

func TestNewLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawio.New(a); got != a {
		t.Fatalf("New(net.Pipe end) = %T, want the same conn", got)
	}
}
