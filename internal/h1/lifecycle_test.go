package h1_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Conformance: disconnects, shutdown, panics and accept errors.

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
