package h1_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Conformance: how responses are framed, flushed and finished.

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
