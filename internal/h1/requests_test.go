package h1_test

import (
	"net/http"
	"strings"
	"testing"
)

// Conformance: how requests are read, kept alive, pipelined and refused.

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
		{
			// Tokens compare in ASCII (issue 9): LONG S folds to s in Unicode only.
			name: "HTTP/1.1 Connection: clo\u017fe is not close",
			give: "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: clo\u017fe\r\n\r\n",
		},
		{name: "HTTP/1.0", give: "GET /echo HTTP/1.0\r\n\r\n", wantClose: true, wantClosed: true},
		{
			name:      "HTTP/1.0 Connection: \u212aeep-alive is not keep-alive",
			give:      "GET /echo HTTP/1.0\r\nConnection: \u212aeep-alive\r\n\r\n",
			wantClose: true, wantClosed: true,
		},
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
		{
			// KELVIN SIGN folds to k in Unicode only (issue 9).
			name: "Transfer-Encoding chun\u212aed",
			give: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\u212aed\r\n\r\n0\r\n\r\n",
			want: 501,
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
