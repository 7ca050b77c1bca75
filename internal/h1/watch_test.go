package h1

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSweepEndsWhenIdle: the goroutine that starts disconnect watches runs
// only while requests are in flight.
func TestSweepEndsWhenIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan bool, 1)
	s := new(Server)
	s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Long enough for the sweep to start this request's watch.
		time.Sleep(3 * DisconnectCheckDelay)
		c := connOf(t, s, r.RemoteAddr)
		c.watchMu.Lock()
		watched <- c.watching
		c.watchMu.Unlock()
		io.WriteString(w, "done")
	})
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !<-watched {
		t.Error("a request running 3 x DisconnectCheckDelay was not watched")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.sweeping.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the sweep still runs 5 s after the last request ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// connOf returns the server's connection from remote.
func connOf(t *testing.T, s *Server, remote string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.remoteAddr == remote {
			return c
		}
	}
	t.Errorf("no connection from %s", remote)
	return &conn{}
}
