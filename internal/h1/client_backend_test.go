package h1_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A raw-socket backend for the client's tests: it misbehaves as a script says.

// clientScript is how a raw-socket backend answers the first request it
// reads; it answers every later one, on any connection, with the body
// uppercased.
type clientScript struct {
	answer []string // each written on its own, 5 ms apart
	drip   bool     // one byte per write, 1 ms apart
	later  string   // written 30 ms after answer
	end    clientScriptEnd
}

// say returns a script that answers with answer, each written on its own.
func say(answer ...string) clientScript { return clientScript{answer: answer} }

// then returns s writing later 30 ms after its answer.
func (s clientScript) then(later string) clientScript { s.later = later; return s }

// ending returns s ending with end.
func (s clientScript) ending(end clientScriptEnd) clientScript { s.end = end; return s }

// dripped returns s writing its answer a byte at a time.
func (s clientScript) dripped() clientScript { s.drip = true; return s }

type clientScriptEnd int

const (
	scriptKeep        clientScriptEnd = iota
	scriptHalfClose                   // close the sending side, read on without answering
	scriptClose                       // close the connection
	scriptCloseOnNext                 // read the connection's next request, then close it
)

type clientBackend struct {
	url      *url.URL
	script   clientScript
	posts    atomic.Int32  // requests read whole
	scripted chan struct{} // closed once the script has run
}

func startClientBackend(t *testing.T, script clientScript) *clientBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &clientBackend{
		url:      &url.URL{Scheme: "http", Host: ln.Addr().String(), Path: "/uppercase"},
		script:   script,
		scripted: make(chan struct{}),
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { b.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *clientBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	scripted, mute := false, false
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		n := b.posts.Add(1)
		switch {
		case mute:
		case scripted && b.script.end == scriptCloseOnNext:
			return
		case n == 1:
			scripted = true
			if mute = b.run(c); b.script.end == scriptClose {
				return
			}
		default:
			upper := bytes.ToUpper(body)
			const echo = "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
			if _, err := fmt.Fprintf(c, echo, len(upper), upper); err != nil {
				return
			}
		}
	}
}

// run plays the script on c and reports whether c can still answer. The
// pauses are the backend's behaviour under test, not synchronisation.
func (b *clientBackend) run(c net.Conn) (mute bool) {
	defer close(b.scripted)
	for i, a := range b.script.answer {
		if i > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if err := b.write(c, a); err != nil {
			return true
		}
	}
	if b.script.later != "" {
		time.Sleep(30 * time.Millisecond)
		if err := b.write(c, b.script.later); err != nil {
			return true
		}
	}
	switch b.script.end {
	case scriptHalfClose:
		c.(*net.TCPConn).CloseWrite()
		return true
	case scriptClose:
		c.Close()
		return true
	}
	return false
}

func (b *clientBackend) write(c net.Conn, s string) error {
	if !b.script.drip {
		_, err := io.WriteString(c, s)
		return err
	}
	for i := range len(s) {
		if i > 0 {
			time.Sleep(time.Millisecond)
		}
		if _, err := io.WriteString(c, s[i:i+1]); err != nil {
			return err
		}
	}
	return nil
}

// waitScripted waits until the backend has played its script, so that
// what it sent after an answer is there before the next request.
func (b *clientBackend) waitScripted(t *testing.T) {
	t.Helper()
	select {
	case <-b.scripted:
	case <-time.After(clientTestTimeout):
		t.Fatal("backend did not finish its script")
	}
}
