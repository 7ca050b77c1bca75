package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func TestRequestFields(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		wantHeader map[string]string
		wantBody   string
	}{
		{
			name: "GET with query",
			give: "GET /echo?a=1&b=two HTTP/1.1\r\nHost: example.com\r\nX-Test: hello\r\n\r\n",
			wantHeader: map[string]string{"X-Method": "GET", "X-Path": "/echo", "X-Query": "a=1&b=two",
				"X-Host": "example.com", "X-Proto": "HTTP/1.1", "X-Content-Length": "0", "X-Test": "hello",
				"X-Remote-Addr-Set": "true"},
		},
		{
			name: "POST with Content-Length",
			give: "POST /echo HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 11\r\n\r\nhello world",
			wantHeader: map[string]string{"X-Method": "POST", "X-Host": "example.com:8080",
				"X-Content-Length": "11", "X-Remote-Addr-Set": "true"},
			wantBody: "hello world",
		},
		{
			name: "POST chunked",
			give: "POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			wantHeader: map[string]string{"X-Method": "POST", "X-Content-Length": "-1"},
			wantBody:   "hello world",
		},
		{
			name: "chunked with extension and trailer",
			give: "POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
			wantHeader: map[string]string{"X-Content-Length": "-1"},
			wantBody:   "hello",
		},
		{
			name:       "HTTP/1.0 without Host",
			give:       "GET /echo HTTP/1.0\r\n\r\n",
			wantHeader: map[string]string{"X-Proto": "HTTP/1.0", "X-Host": ""},
		},
		{
			name:       "absolute-form target overrides Host",
			give:       "GET http://other.example/echo?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
			wantHeader: map[string]string{"X-Host": "other.example", "X-Path": "/echo", "X-Query": "q"},
		},
		{
			name:       "lower-case name, padded value",
			give:       "GET /echo HTTP/1.1\r\nhost: example.com\r\nx-test: \t padded \t\r\n\r\n",
			wantHeader: map[string]string{"X-Test": "padded", "X-Host": "example.com"},
		},
		{
			name:       "repeated identical Content-Length",
			give:       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
			wantHeader: map[string]string{"X-Content-Length": "3"},
			wantBody:   "abc",
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					nc, br := dial(t, ts)
					send(t, nc, tt.give)
					resp, body := readResponse(t, br, http.MethodGet)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status = %q (body %q); want 200 OK", resp.Status, body)
					}
					for k, want := range tt.wantHeader {
						if got := resp.Header.Get(k); got != want {
							t.Errorf("%s = %q; want %q", k, got, want)
						}
					}
					if body != tt.wantBody {
						t.Errorf("body = %q; want %q", body, tt.wantBody)
					}
				})
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	requests := []struct{ give, wantBody string }{
		{"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none", "one"},
		{"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n", "two"},
		{"GET /sniff HTTP/1.1\r\nHost: x\r\n\r\n", sniffBody},
		{"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree", "three"},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			nc, br := dial(t, ts)
			for i, r := range requests {
				send(t, nc, r.give)
				resp, body := readResponse(t, br, http.MethodGet)
				if resp.StatusCode != http.StatusOK || body != r.wantBody || resp.Close {
					t.Fatalf("request %d: %q, body %q, Close %v; want 200 OK, %q, false",
						i, resp.Status, body, resp.Close, r.wantBody)
				}
			}
		})
	}
}

func TestPipelining(t *testing.T) {
	const second = "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name      string
		first     string
		wantFirst string // body of the first answer
	}{
		{"GET then GET", "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"Content-Length body then GET", "POST /echo?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", "body"},
		{
			"chunked body then GET",
			"POST /echo?n=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
			"body",
		},
		{
			// The trailer section belongs to the first request: a server
			// that stops at the last chunk reads it as the next request.
			"chunked body with trailer then GET",
			"POST /echo?n=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"4\r\nbody\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
			"body",
		},
		{"unread body then GET", "POST /unread?n=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", "ok"},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					nc, br := dial(t, ts)
					send(t, nc, tt.first+second) // one write
					resp, body := readResponse(t, br, http.MethodGet)
					if resp.StatusCode != http.StatusOK || body != tt.wantFirst {
						t.Fatalf("first answer: %q, body %q; want 200 OK, %q", resp.Status, body, tt.wantFirst)
					}
					resp, _ = readResponse(t, br, http.MethodGet)
					if got := resp.Header.Get("X-Query"); resp.StatusCode != http.StatusOK || got != "n=2" {
						t.Fatalf("second answer: %q, X-Query %q; want 200 OK, %q", resp.Status, got, "n=2")
					}
				})
			}
		})
	}
}

func TestConnectionPersistence(t *testing.T) {
	tests := []struct {
		name          string
		give          string
		wantClose     bool // the answer says Connection: close
		wantKeepAlive bool // the answer says Connection: keep-alive
		wantClosed    bool // the server then closes the connection
	}{
		{name: "HTTP/1.1", give: "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"},
		{
			name: "HTTP/1.1 Connection: close", give: "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			wantClose: true, wantClosed: true,
		},
		{
			name:      "HTTP/1.1 Connection: Close among tokens",
			give:      "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n",
			wantClose: true, wantClosed: true,
		},
		{name: "HTTP/1.0", give: "GET /echo HTTP/1.0\r\n\r\n", wantClose: true, wantClosed: true},
		{
			name: "HTTP/1.0 keep-alive", give: "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			wantKeepAlive: true,
		},
		{
			name:          "HTTP/1.0 keep-alive with body",
			give:          "POST /echo HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi",
			wantKeepAlive: true,
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					nc, br := dial(t, ts)
					send(t, nc, tt.give)
					resp, _ := readResponse(t, br, http.MethodGet)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status = %q; want 200 OK", resp.Status)
					}
					// ReadResponse turns Connection: close into Close and drops it.
					if resp.Close != tt.wantClose {
						t.Errorf("answer says Connection: close = %v; want %v", resp.Close, tt.wantClose)
					}
					if got := resp.Header.Get("Connection") == "keep-alive"; got != tt.wantKeepAlive {
						t.Errorf("answer says Connection: keep-alive = %v; want %v", got, tt.wantKeepAlive)
					}
					if tt.wantClosed {
						expectClosed(t, br)
					} else {
						expectAlive(t, nc, br)
					}
				})
			}
		})
	}
}

func TestExpectContinue(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			nc, br := dial(t, ts)
			send(t, nc, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			resp, _ := readResponse(t, br, http.MethodPost)
			if resp.StatusCode != http.StatusContinue {
				t.Fatalf("first answer %q; want 100 Continue", resp.Status)
			}
			send(t, nc, "hello")
			resp, body := readResponse(t, br, http.MethodPost)
			if resp.StatusCode != http.StatusOK || body != "hello" {
				t.Fatalf("answer %q, body %q; want 200 OK, %q", resp.Status, body, "hello")
			}
			expectAlive(t, nc, br)
		})
	}
}

// TestExpectContinueUnread: when the handler does not read the body, no
// 100 Continue is sent, and the connection ends after the answer, since the
// client may or may not send the body.
func TestExpectContinueUnread(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			nc, br := dial(t, ts)
			send(t, nc, "POST /unread HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			resp, body := readResponse(t, br, http.MethodPost)
			if resp.StatusCode != http.StatusOK || body != "ok" || !resp.Close {
				t.Fatalf("answer %q, body %q, Close %v; want 200 OK, %q, true", resp.Status, body, resp.Close, "ok")
			}
			// A client that does not wait for 100 Continue sends the body
			// anyway; net/http reads it before it closes.
			send(t, nc, "hello")
			expectClosed(t, br)
		})
	}
}

func TestRefusals(t *testing.T) {
	const maxHeaderBytes = 1 << 10
	tests := []struct {
		name string
		give string
		want int
		// netHTTPDiffers, when set, says why the row holds for h1 only.
		netHTTPDiffers string
	}{
		{name: "request line without version", give: "GET /\r\nHost: x\r\n\r\n", want: 400},
		{name: "request line with two spaces", give: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", want: 400},
		{name: "method not a token", give: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", want: 400},
		{name: "garbage", give: "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", want: 400},
		{name: "missing Host in HTTP/1.1", give: "GET / HTTP/1.1\r\n\r\n", want: 400},
		{name: "two Host headers", give: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", want: 400},
		{name: "Host with a space", give: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", want: 400},
		{name: "Host with a slash", give: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", want: 400},
		{
			name: "conflicting Content-Length",
			give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			want: 400,
		},
		{name: "Content-Length not a number", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", want: 400},
		{name: "Content-Length negative", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", want: 400},
		{name: "Content-Length minus zero", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n", want: 400},
		{name: "Content-Length with plus", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", want: 400},
		{name: "Content-Length list", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na", want: 400},
		{name: "Content-Length empty", give: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", want: 400},
		{
			name: "Transfer-Encoding with Content-Length",
			give: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
			want: 400,
			// RFC 9112 6.1 allows both; net/http drops the Content-Length
			// and reads the chunked body.
			netHTTPDiffers: "net/http accepts Transfer-Encoding with Content-Length, dropping the latter",
		},
		{name: "Transfer-Encoding gzip", give: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", want: 501},
		{
			name: "Transfer-Encoding gzip, chunked",
			give: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			want: 501,
		},
		{name: "HTTP/2.0", give: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", want: 505},
		{name: "HTTP/3.0", give: "GET / HTTP/3.0\r\nHost: x\r\n\r\n", want: 505},
		{name: "HTTP/0.9", give: "GET / HTTP/0.9\r\nHost: x\r\n\r\n", want: 505},
		{
			// Over MaxHeaderBytes plus the 4 KiB net/http grants on top.
			name: "header larger than MaxHeaderBytes",
			give: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", maxHeaderBytes+5000) + "\r\n\r\n",
			want: 431,
		},
		{
			name: "many headers larger than MaxHeaderBytes",
			give: "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: aaaaaaaaaaaaaaaaaaaa\r\n", 300) + "\r\n",
			want: 431,
		},
		{name: "space before colon", give: "GET / HTTP/1.1\r\nHost: x\r\nX-Test : a\r\n\r\n", want: 400},
		{
			name: "obs-fold", give: "GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n b\r\n\r\n", want: 400,
			// RFC 9112 5.2 lets a server either reject or unfold.
			netHTTPDiffers: "net/http unfolds obs-fold into one value",
		},
		{name: "header without colon", give: "GET / HTTP/1.1\r\nHost: x\r\nX-Test\r\n\r\n", want: 400},
		{name: "header name not a token", give: "GET / HTTP/1.1\r\nHost: x\r\nX@Test: a\r\n\r\n", want: 400},
		{name: "NUL in header value", give: "GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\x00b\r\n\r\n", want: 400},
		{name: "control in target", give: "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", want: 400},
		{
			name: "unknown expectation",
			give: "POST / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\nhello",
			want: 417,
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{maxHeaderBytes: maxHeaderBytes})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if kind == "net/http" && tt.netHTTPDiffers != "" {
						t.Skip(tt.netHTTPDiffers)
					}
					nc, br := dial(t, ts)
					send(t, nc, tt.give)
					resp, body := readResponse(t, br, http.MethodGet)
					if resp.StatusCode != tt.want {
						t.Fatalf("status = %q (body %q); want %d", resp.Status, body, tt.want)
					}
					expectClosed(t, br)
				})
			}
		})
	}
}

func TestResponses(t *testing.T) {
	const keep = "keep" // wantHeader value: present, any value
	tests := []struct {
		name              string
		method, target    string
		wantStatus        int
		wantHeader        map[string]string // "" means absent
		wantContentLength int64
		wantBody          string
		wantSaysClose     bool // the answer says Connection: close
		wantClosed        bool // the server then closes the connection
	}{
		{
			name: "handler writes nothing", method: "GET", target: "/empty",
			wantStatus: 200, wantContentLength: 0,
			wantHeader: map[string]string{"Content-Length": "0"},
		},
		{
			name: "Content-Type sniffed", method: "GET", target: "/sniff",
			wantStatus: 200, wantContentLength: int64(len(sniffBody)), wantBody: sniffBody,
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8"},
		},
		{
			name: "204 has no body", method: "GET", target: "/status/204",
			wantStatus: 204, wantHeader: map[string]string{"Transfer-Encoding": ""},
		},
		{
			name: "304 has no body", method: "GET", target: "/status/304",
			wantStatus: 304, wantHeader: map[string]string{"Transfer-Encoding": ""},
		},
		{
			name: "HEAD has no body", method: "HEAD", target: "/sniff",
			wantStatus: 200, wantContentLength: int64(len(sniffBody)),
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8"},
		},
		{
			name: "404", method: "GET", target: "/nowhere",
			wantStatus: 404, wantContentLength: int64(len("404 page not found\n")), wantBody: "404 page not found\n",
		},
		{
			name: "body over 64 KiB in one write", method: "GET", target: "/big",
			wantStatus: 200, wantContentLength: -1, wantBody: bigBody,
			wantHeader: map[string]string{"Content-Type": "text/plain; charset=utf-8"},
		},
		{
			name: "CR and LF in header values", method: "GET", target: "/crlf",
			wantStatus: 200, wantContentLength: 0,
			wantHeader: map[string]string{"Injected": "", "Injected-Lf": "", "X-Evil": keep, "X-Evil-Lf": keep},
		},
		{
			name: "handler sets Transfer-Encoding", method: "GET", target: "/handler-te",
			wantStatus: 200, wantContentLength: -1, wantBody: "hello",
		},
		{
			name: "handler sets Connection: close", method: "GET", target: "/handler-close",
			wantStatus: 200, wantContentLength: 3, wantBody: "bye",
			wantSaysClose: true, wantClosed: true,
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					nc, br := dial(t, ts)
					send(t, nc, tt.method+" "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
					resp, body := readResponse(t, br, tt.method)
					if resp.StatusCode != tt.wantStatus {
						t.Fatalf("status = %q; want %d", resp.Status, tt.wantStatus)
					}
					if body != tt.wantBody {
						t.Errorf("body = %.100q (%d bytes); want %.100q (%d bytes)",
							body, len(body), tt.wantBody, len(tt.wantBody))
					}
					if tt.wantContentLength >= 0 && resp.ContentLength != tt.wantContentLength {
						t.Errorf("ContentLength = %d; want %d", resp.ContentLength, tt.wantContentLength)
					}
					if resp.Close != tt.wantSaysClose {
						t.Errorf("answer says Connection: close = %v; want %v", resp.Close, tt.wantSaysClose)
					}
					if date, err := http.ParseTime(resp.Header.Get("Date")); err != nil || time.Since(date) > time.Hour {
						t.Errorf("Date = %q (%v); want the current time", resp.Header.Get("Date"), err)
					}
					for k, want := range tt.wantHeader {
						got, ok := resp.Header[k]
						switch {
						case want == keep && !ok:
							t.Errorf("header %s missing", k)
						case want == "" && ok:
							t.Errorf("header %s = %q; want none", k, got)
						case want != keep && want != "" && resp.Header.Get(k) != want:
							t.Errorf("header %s = %q; want %q", k, got, want)
						}
					}
					// The answer must have ended where the client thinks it did.
					if tt.wantClosed {
						expectClosed(t, br)
					} else {
						expectAlive(t, nc, br)
					}
				})
			}
		})
	}
}

// TestContentLengthMismatch: when a handler's body does not match the
// Content-Length it set, the client never reads more than declared (the
// rest would pass for the next response), and the connection ends.
func TestContentLengthMismatch(t *testing.T) {
	// What a handler writing past its length would smuggle in.
	const injected = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	tests := []struct {
		name   string
		flush  bool     // flush after setting Content-Length: 10
		writes []string // then these writes
	}{
		{name: "more, after a flush", flush: true, writes: []string{"0123456789", injected}},
		{name: "more, in one write after a flush", flush: true, writes: []string{"0123456789" + injected}},
		{name: "more, then a write too large to buffer", writes: []string{"0123456789" + injected, bigBody}},
		{name: "less, after a flush", flush: true, writes: []string{"01234"}},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					mux := http.NewServeMux()
					mux.Handle("/", newTestHandler())
					mux.HandleFunc("/mismatch", func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Content-Length", "10")
						if tt.flush {
							w.(http.Flusher).Flush()
						}
						for _, s := range tt.writes {
							io.WriteString(w, s)
						}
					})
					ts := startServer(t, kind, serverOpts{handler: mux})
					nc, br := dial(t, ts)
					send(t, nc, "GET /mismatch HTTP/1.1\r\nHost: x\r\n\r\n")
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("ReadResponse: %v", err)
					}
					body, err := io.ReadAll(resp.Body)
					if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("read body: %v; want nil or %v", err, io.ErrUnexpectedEOF)
					}
					if resp.ContentLength != 10 || !strings.HasPrefix("0123456789", string(body)) {
						t.Fatalf("answer with ContentLength %d, body %q; want 10 and a prefix of %q",
							resp.ContentLength, body, "0123456789")
					}
					expectClosed(t, br)
				})
			}
		})
	}
}

// TestHeadMatchesGet: a HEAD answer carries the header fields a GET would.
func TestHeadMatchesGet(t *testing.T) {
	tests := []struct {
		target string
		fields []string
	}{
		{"/sniff", []string{"Content-Type", "Content-Length"}},
		{"/empty", []string{"Content-Type"}},
		{"/big", []string{"Content-Type"}},
		{"/echo", []string{"Content-Type", "X-Path"}},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.target, func(t *testing.T) {
					nc, br := dial(t, ts)
					send(t, nc, "GET "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
					get, _ := readResponse(t, br, http.MethodGet)
					send(t, nc, "HEAD "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
					head, body := readResponse(t, br, http.MethodHead)
					if body != "" {
						t.Fatalf("HEAD body = %q; want none", body)
					}
					for _, k := range tt.fields {
						if g, h := get.Header[k], head.Header[k]; fmt.Sprint(g) != fmt.Sprint(h) {
							t.Errorf("HEAD %s = %q; want %q as for GET", k, h, g)
						}
					}
					expectAlive(t, nc, br)
				})
			}
		})
	}
}

func TestFlush(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			proceed := make(chan struct{})
			mux := http.NewServeMux()
			mux.Handle("/", newTestHandler())
			mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "first")
				w.(http.Flusher).Flush()
				select {
				case <-proceed: // the client has read "first"
				case <-time.After(clientTimeout):
				}
				io.WriteString(w, "second")
			})
			ts := startServer(t, kind, serverOpts{handler: mux})
			nc, br := dial(t, ts)
			send(t, nc, "GET /flush HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("ReadResponse: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, len("first"))
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
				t.Fatalf("read flushed part: %q, %v; want %q, nil", first, err, "first")
			}
			close(proceed)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "second" {
				t.Fatalf("read rest: %q, %v; want %q, nil", rest, err, "second")
			}
			expectAlive(t, nc, br)
		})
	}
}

func TestUnreadRequestBody(t *testing.T) {
	// A body made of requests: if the server ever parsed what the handler
	// left unread as requests, the client would see answers to them.
	smuggled := strings.Repeat("GET /echo?n=smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 1<<20/40)
	tests := []struct {
		name       string
		head       string
		body       string
		wantClosed bool
	}{
		{
			name: "small leftover",
			head: "POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
			body: strings.Repeat("x", 1000),
		},
		{
			name: "small chunked leftover",
			head: "POST /unread HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			body: "3e8\r\n" + strings.Repeat("x", 1000) + "\r\n0\r\n\r\n",
		},
		{
			name: "1 MiB read partially", wantClosed: true,
			head: "POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
			body: smuggled,
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					nc, br := dial(t, ts)
					head := tt.head
					if strings.Contains(head, "%d") {
						head = fmt.Sprintf(head, len(tt.body))
					}
					// The server may stop reading: write from another goroutine.
					written := make(chan error, 1)
					go func() {
						_, err := io.WriteString(nc, head+tt.body)
						written <- err
					}()
					resp, body := readResponse(t, br, http.MethodPost)
					if resp.StatusCode != http.StatusOK || body != "ok" {
						t.Fatalf("answer %q, body %q; want 200 OK, %q", resp.Status, body, "ok")
					}
					if tt.wantClosed {
						if !resp.Close {
							t.Errorf("answer without Connection: close; want it")
						}
						expectClosed(t, br)
						if err := <-written; err != nil && !isClosed(err) {
							t.Errorf("write request: %v; want nil or the connection closed", err)
						}
						return
					}
					if err := <-written; err != nil {
						t.Fatalf("write request: %v", err)
					}
					expectAlive(t, nc, br)
				})
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	const d = 200 * time.Millisecond
	tests := []struct {
		name   string
		opts   serverOpts
		before int    // requests answered first
		stall  string // then sent before the client goes quiet
	}{
		{name: "half a header block", opts: serverOpts{readHeaderTimeout: d}, stall: "GET / HTTP/1.1\r\nHost: x\r\n"},
		{
			name: "half a header block after a request", opts: serverOpts{readHeaderTimeout: d},
			before: 1, stall: "GET / HTTP/1.1\r\nHost: x\r\n",
		},
		{
			name: "half a header block, ReadTimeout only", opts: serverOpts{readTimeout: d},
			stall: "GET / HTTP/1.1\r\nHost: x\r\n",
		},
		{name: "nothing sent", opts: serverOpts{readHeaderTimeout: d}},
		{name: "nothing sent, ReadTimeout only", opts: serverOpts{readTimeout: d}},
		{
			name: "half a body", opts: serverOpts{readTimeout: d},
			stall: "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",
		},
		{name: "idle", opts: serverOpts{idleTimeout: d, readHeaderTimeout: time.Minute}, before: 1},
		{name: "idle, ReadTimeout only", opts: serverOpts{readTimeout: d}, before: 1},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ts := startServer(t, kind, tt.opts)
					nc, br := dial(t, ts)
					for range tt.before {
						expectAlive(t, nc, br)
					}
					if tt.stall != "" {
						send(t, nc, tt.stall)
					}
					// Whatever the server says, if anything, it must then close.
					if resp, err := http.ReadResponse(br, nil); err == nil {
						resp.Body.Close()
						t.Logf("answer before the close: %q", resp.Status)
					} else if !isClosed(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("read: %v; want the server to close the connection", err)
					}
				})
			}
		})
	}
}

// ctxResult is what a handler saw of its request's context.
type ctxResult struct {
	path string
	err  error
}

// newWaitHandler returns a handler that reads the body, waits pause,
// signals started, then waits for its request's context to end (at most
// clientTimeout) and reports its error on results.
func newWaitHandler(pause time.Duration, started chan<- string, results chan<- ctxResult) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if pause > 0 {
			<-time.After(pause) // work that takes a while, not synchronisation
		}
		started <- r.URL.Path
		select {
		case <-r.Context().Done():
		case <-time.After(clientTimeout):
		}
		results <- ctxResult{r.URL.Path, r.Context().Err()}
	})
}

func TestClientDisconnectCancelsContext(t *testing.T) {
	tests := []struct {
		name   string
		opts   serverOpts
		pause  time.Duration
		before string // a request answered first on the same connection
		give   string
	}{
		{name: "GET", give: "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"},
		{
			// Draining the first body must not leave a watch running
			// into the second request.
			name:   "after a streamed answer to a body left unread",
			before: "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100),
			give:   "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n",
		},
		{name: "POST with a body read", give: "POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
		{
			name: "POST with a chunked body read",
			give: "POST /wait HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		},
		{
			// net/http stops the read deadline while it watches.
			name: "after ReadTimeout passed", opts: serverOpts{readTimeout: 100 * time.Millisecond},
			pause: 150 * time.Millisecond, give: "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n",
		},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					started, results := make(chan string, 1), make(chan ctxResult, 1)
					mux := http.NewServeMux()
					mux.Handle("/wait", newWaitHandler(tt.pause, started, results))
					mux.Handle("/", newTestHandler())
					tt.opts.handler = mux
					ts := startServer(t, kind, tt.opts)
					nc, br := dial(t, ts)
					if tt.before != "" {
						send(t, nc, tt.before)
						if resp, body := readResponse(t, br, http.MethodPost); body != bigBody {
							t.Fatalf("first answer %q with a %d-byte body; want 200 OK with bigBody", resp.Status, len(body))
						}
					}
					send(t, nc, tt.give)
					<-started
					nc.Close()
					select {
					case res := <-results:
						if !errors.Is(res.err, context.Canceled) {
							t.Fatalf("handler's ctx.Err() = %v; want %v", res.err, context.Canceled)
						}
					case <-time.After(2 * clientTimeout):
						t.Fatal("handler did not return")
					}
				})
			}
		})
	}
}

// TestLongRequestNotCancelled: a request that runs past the disconnect
// check while its client stays connected keeps its context, also when the
// client pipelines the next request meanwhile.
func TestLongRequestNotCancelled(t *testing.T) {
	const work = 50 * time.Millisecond // five times h1.DisconnectCheckDelay
	for _, kind := range kinds {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pipelined=%v", kind, pipelined), func(t *testing.T) {
				started, sent := make(chan struct{}), make(chan struct{})
				results := make(chan error, 1)
				mux := http.NewServeMux()
				mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) {
					close(started)
					if pipelined {
						<-sent
					}
					select {
					case <-r.Context().Done():
					case <-time.After(work):
					}
					results <- r.Context().Err()
					io.WriteString(w, "done")
				})
				mux.Handle("/", newTestHandler())
				ts := startServer(t, kind, serverOpts{handler: mux})
				nc, br := dial(t, ts)
				send(t, nc, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
				if pipelined {
					<-started
					send(t, nc, "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
					close(sent)
				}
				resp, body := readResponse(t, br, http.MethodGet)
				if err := <-results; err != nil {
					t.Errorf("handler's ctx.Err() = %v; want nil", err)
				}
				if resp.StatusCode != http.StatusOK || body != "done" {
					t.Fatalf("answer %q, body %q; want 200 OK, %q", resp.Status, body, "done")
				}
				if pipelined {
					resp, _ = readResponse(t, br, http.MethodGet)
					if got := resp.Header.Get("X-Query"); got != "n=2" {
						t.Fatalf("second answer: %q, X-Query %q; want 200 OK, %q", resp.Status, got, "n=2")
					}
				}
			})
		}
	}
}

// newBlockHandler serves /block, which signals started and waits for
// release (at most clientTimeout); anything else goes to newTestHandler.
func newBlockHandler(started chan<- struct{}, release <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-time.After(clientTimeout):
		}
		io.WriteString(w, "released")
	})
	mux.Handle("/", newTestHandler())
	return mux
}

func TestShutdown(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			ts := startServer(t, kind, serverOpts{handler: newBlockHandler(started, release)})
			idle, idleBR := dial(t, ts)
			expectAlive(t, idle, idleBR)
			busy, busyBR := dial(t, ts)
			send(t, busy, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
			<-started

			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			shutdown := make(chan error, 1)
			go func() { shutdown <- ts.srv.Shutdown(ctx) }()
			expectClosed(t, idleBR)
			select {
			case err := <-shutdown:
				t.Fatalf("Shutdown() = %v with a request in flight; want it to wait", err)
			default:
			}
			if c, err := net.DialTimeout("tcp", ts.addr, clientTimeout); err == nil {
				c.Close()
				t.Errorf("dial after Shutdown succeeded; want the listener closed")
			}

			close(release)
			resp, body := readResponse(t, busyBR, http.MethodGet)
			if resp.StatusCode != http.StatusOK || body != "released" || !resp.Close {
				t.Fatalf("in-flight answer %q, body %q, Close %v; want 200 OK, %q, true",
					resp.Status, body, resp.Close, "released")
			}
			expectClosed(t, busyBR)
			if err := <-shutdown; err != nil {
				t.Fatalf("Shutdown() = %v; want nil", err)
			}
			if err := ts.waitServe(t); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve() = %v; want %v", err, http.ErrServerClosed)
			}
		})
	}
}

func TestShutdownContextExpired(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			started, release := make(chan struct{}, 1), make(chan struct{})
			ts := startServer(t, kind, serverOpts{handler: newBlockHandler(started, release)})
			busy, busyBR := dial(t, ts)
			send(t, busy, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
			<-started

			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown() = %v; want %v", err, context.DeadlineExceeded)
			}
			close(release)
			resp, _ := readResponse(t, busyBR, http.MethodGet)
			if !resp.Close {
				t.Errorf("in-flight answer without Connection: close")
			}
			expectClosed(t, busyBR)
		})
	}
}

func TestServeAfterShutdown(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, serverOpts{})
			if err := ts.srv.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown() = %v; want nil", err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			defer ln.Close()
			if err := ts.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve() after Shutdown = %v; want %v", err, http.ErrServerClosed)
			}
		})
	}
}

func TestClose(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			started, results := make(chan string, 1), make(chan ctxResult, 1)
			mux := http.NewServeMux()
			mux.Handle("/wait", newWaitHandler(0, started, results))
			mux.Handle("/", newTestHandler())
			ts := startServer(t, kind, serverOpts{handler: mux})
			idle, idleBR := dial(t, ts)
			expectAlive(t, idle, idleBR)
			busy, busyBR := dial(t, ts)
			send(t, busy, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
			<-started

			if err := ts.srv.Close(); err != nil {
				t.Fatalf("Close() = %v; want nil", err)
			}
			expectClosed(t, idleBR)
			expectClosed(t, busyBR)
			if err := ts.waitServe(t); !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve() = %v; want %v", err, http.ErrServerClosed)
			}
			if res := <-results; !errors.Is(res.err, context.Canceled) {
				t.Fatalf("in-flight handler's ctx.Err() = %v; want %v", res.err, context.Canceled)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestHandlerPanic(t *testing.T) {
	tests := []struct {
		name       string
		value      any
		wantLogged string // "" means nothing about the panic is logged
	}{
		{"ErrAbortHandler", http.ErrAbortHandler, ""},
		{"other value", "boom", "boom"},
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var logBuf syncBuffer
					ctxDone := make(chan error, 1)
					mux := http.NewServeMux()
					mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
						go func() { // work the handler left behind, bound to the request
							select {
							case <-r.Context().Done():
							case <-time.After(clientTimeout):
							}
							ctxDone <- r.Context().Err()
						}()
						io.WriteString(w, "never sent")
						panic(tt.value)
					})
					mux.Handle("/", newTestHandler())
					ts := startServer(t, kind, serverOpts{handler: mux, errorLog: log.New(&logBuf, "", 0)})

					nc, br := dial(t, ts)
					send(t, nc, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
					expectClosed(t, br)
					if err := <-ctxDone; !errors.Is(err, context.Canceled) {
						t.Errorf("panicked request's ctx.Err() = %v; want %v", err, context.Canceled)
					}
					other, otherBR := dial(t, ts)
					expectAlive(t, other, otherBR)

					logged := logBuf.String()
					if tt.wantLogged == "" && strings.Contains(logged, "panic") {
						t.Errorf("log = %q; want nothing about the panic", logged)
					}
					if tt.wantLogged != "" && !strings.Contains(logged, tt.wantLogged) {
						t.Errorf("log = %q; want it to contain %q", logged, tt.wantLogged)
					}
				})
			}
		})
	}
}

// flakyListener fails its first Accept calls as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		err := os.NewSyscallError("accept4", syscall.EMFILE)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
	}
	return l.Listener.Accept()
}

func TestAcceptTemporaryError(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			wrap := func(ln net.Listener) net.Listener {
				fl := &flakyListener{Listener: ln}
				fl.failures.Store(2)
				return fl
			}
			ts := startServer(t, kind, serverOpts{wrapListener: wrap})
			nc, br := dial(t, ts)
			expectAlive(t, nc, br)
		})
	}
}
