package h1_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stringsvc/internal/h1"
)

// The conformance tests run the same table against h1 and net/http: where
// a careful client could tell them apart, h1 is wrong unless a row says why.
var kinds = []string{"h1", "net/http"}

// clientTimeout bounds every client read and write, so that a server that
// never answers fails the test instead of hanging it. It is generous on
// purpose: the tests assert what happens, not how fast.
const clientTimeout = 10 * time.Second

// server is what the tests need of *h1.Server and *http.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// serverOpts are the settings a test gives either server.
type serverOpts struct {
	handler           http.Handler // nil: newTestHandler()
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	errorLog          *log.Logger                     // nil: discarded
	wrapListener      func(net.Listener) net.Listener // nil: the listener as is
}

// testServer is an h1.Server or http.Server serving on 127.0.0.1.
type testServer struct {
	addr     string
	srv      server
	done     chan struct{} // closed when Serve returned
	serveErr error
}

// startServer starts the server of the given kind on a fresh loopback
// listener and closes it when the test ends, checking that Serve then
// returns http.ErrServerClosed.
func startServer(t testing.TB, kind string, o serverOpts) *testServer {
	t.Helper()
	if o.handler == nil {
		o.handler = newTestHandler()
	}
	if o.errorLog == nil {
		o.errorLog = log.New(io.Discard, "", 0)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{addr: ln.Addr().String(), done: make(chan struct{})}
	if o.wrapListener != nil {
		ln = o.wrapListener(ln)
	}
	switch kind {
	case "h1":
		ts.srv = &h1.Server{
			Handler:           o.handler,
			ReadHeaderTimeout: o.readHeaderTimeout,
			ReadTimeout:       o.readTimeout,
			IdleTimeout:       o.idleTimeout,
			MaxHeaderBytes:    o.maxHeaderBytes,
			ErrorLog:          o.errorLog,
		}
	case "net/http":
		ts.srv = &http.Server{
			Handler:           o.handler,
			ReadHeaderTimeout: o.readHeaderTimeout,
			ReadTimeout:       o.readTimeout,
			IdleTimeout:       o.idleTimeout,
			MaxHeaderBytes:    o.maxHeaderBytes,
			ErrorLog:          o.errorLog,
		}
	default:
		t.Fatalf("unknown server kind %q", kind)
	}
	go func() {
		ts.serveErr = ts.srv.Serve(ln)
		close(ts.done)
	}()
	t.Cleanup(func() {
		if err := ts.srv.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
		if err := ts.waitServe(t); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v; want %v", err, http.ErrServerClosed)
		}
		ln.Close()
	})
	return ts
}

// waitServe waits for Serve to return and returns its error.
func (ts *testServer) waitServe(t testing.TB) error {
	t.Helper()
	select {
	case <-ts.done:
		return ts.serveErr
	case <-time.After(clientTimeout):
		t.Fatalf("Serve did not return within %v", clientTimeout)
		return nil
	}
}

// dial opens a client connection to ts, closed when the test ends.
func dial(t testing.TB, ts *testServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.SetDeadline(time.Now().Add(clientTimeout)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	return nc, bufio.NewReader(nc)
}

func send(t testing.TB, nc net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(nc, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
}

// readResponse reads one response to a request with the given method, and
// its whole body.
func readResponse(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body of %q: %v", resp.Status, err)
	}
	return resp, string(body)
}

// expectClosed fails unless the server closed the connection: the next
// read ends in EOF or a reset, and never returns data (a second answer
// would mean the server parsed something the client did not mean as a
// request) nor waits for the client's own deadline.
func expectClosed(t testing.TB, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("read %q after the answer; want the connection closed", append([]byte{b}, rest...))
	}
	if !isClosed(err) {
		t.Fatalf("read: %v; want EOF (connection closed by the server)", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// expectAlive sends one more request on nc and checks its answer: the
// previous exchange left the connection open and in step.
func expectAlive(t testing.TB, nc net.Conn, br *bufio.Reader) {
	t.Helper()
	send(t, nc, "GET /echo?n=next HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, _ := readResponse(t, br, http.MethodGet)
	if got := resp.Header.Get("X-Query"); resp.StatusCode != http.StatusOK || got != "n=next" {
		t.Fatalf("next request: %q with X-Query %q; want 200 OK with %q", resp.Status, got, "n=next")
	}
}

// bigBody is a response body well over h1's 64 KiB buffer.
var bigBody = func() string {
	var b strings.Builder
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "line %06d\n", i)
	}
	return b.String()
}()

const sniffBody = "<html><body>hello</body></html>"

// newTestHandler returns the handler most tests serve. /echo answers with
// the request's fields in X- headers and its body as the body.
func newTestHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("X-Method", r.Method)
		h.Set("X-Path", r.URL.Path)
		h.Set("X-Query", r.URL.RawQuery)
		h.Set("X-Host", r.Host)
		h.Set("X-Proto", r.Proto)
		h.Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
		h.Set("X-Test", r.Header.Get("X-Test"))
		h.Set("X-Remote-Addr-Set", strconv.FormatBool(r.RemoteAddr != ""))
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sniffBody)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, bigBody) // one write, larger than any buffer
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
		io.WriteString(w, "body that must not be sent")
	})
	mux.HandleFunc("/crlf", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Evil", "a\r\nInjected: yes")
		w.Header().Set("X-Evil-Lf", "b\nInjected-Lf: yes")
	})
	mux.HandleFunc("/handler-te", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/handler-close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/unread", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/partial", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, 10)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	})
	return mux
}
