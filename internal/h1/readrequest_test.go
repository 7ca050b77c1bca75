package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzReadRequest checks that readRequest never panics, refuses with a
// status h1 documents, and that what it accepts is well formed and framed
// as net/http frames it whenever net/http accepts the same head: a
// disagreement on where a body ends is what request smuggling feeds on.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a/b?c=d HTTP/1.1\r\nHost: example.com:80\r\nAccept: */*\r\nX-Test: a\r\nX-Test: b\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"get / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
		// Refused.
		"GET /\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Test : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\rb\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		const maxHeader = 1 << 10
		r, err := readRequest(bufio.NewReaderSize(strings.NewReader(s), 4096), maxHeader)
		if err != nil {
			var re *requestError
			switch {
			case errors.As(err, &re):
				switch re.status {
				case 400, 417, 431, 501, 505:
				default:
					t.Fatalf("readRequest(%q): status %d; want one of 400, 417, 431, 501, 505", s, re.status)
				}
			case errors.Is(err, io.EOF):
			default:
				t.Fatalf("readRequest(%q): %v; want a *requestError or io.EOF", s, err)
			}
			return
		}
		checkRequest(t, s, r)

		nr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			return
		}
		if nr.Method != r.Method || nr.RequestURI != r.RequestURI || nr.Host != r.Host || nr.Proto != r.Proto {
			t.Errorf("readRequest(%q) = %s %s %s Host %q; net/http reads %s %s %s Host %q",
				s, r.Method, r.RequestURI, r.Proto, r.Host, nr.Method, nr.RequestURI, nr.Proto, nr.Host)
		}
		if nr.ContentLength != r.ContentLength {
			t.Errorf("readRequest(%q): ContentLength %d; net/http reads %d", s, r.ContentLength, nr.ContentLength)
		}
	})
}

// checkRequest checks what must hold of every request readRequest accepts.
func checkRequest(t *testing.T, s string, r *request) {
	t.Helper()
	if !isTestToken(r.Method) {
		t.Errorf("readRequest(%q): Method %q is not a token", s, r.Method)
	}
	if r.URL == nil || r.RequestURI == "" || strings.ContainsAny(r.RequestURI, " \t\r\n\x00") {
		t.Errorf("readRequest(%q): URL %v, RequestURI %q", s, r.URL, r.RequestURI)
	}
	switch {
	case r.Proto == "HTTP/1.1" && r.ProtoMajor == 1 && r.ProtoMinor == 1:
	case r.Proto == "HTTP/1.0" && r.ProtoMajor == 1 && r.ProtoMinor == 0:
	default:
		t.Errorf("readRequest(%q): Proto %q %d.%d", s, r.Proto, r.ProtoMajor, r.ProtoMinor)
	}
	if strings.ContainsAny(r.Host, "\r\n\x00 ") {
		t.Errorf("readRequest(%q): Host %q has a space or control character", s, r.Host)
	}
	for name, values := range r.Header {
		if !isTestToken(name) || http.CanonicalHeaderKey(name) != name || name == "Host" {
			t.Errorf("readRequest(%q): header name %q", s, name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") || strings.Trim(v, " \t") != v {
				t.Errorf("readRequest(%q): %s value %q", s, name, v)
			}
		}
	}
	switch r.body {
	case bodyNone:
		if r.ContentLength != 0 || r.expectContinue {
			t.Errorf("readRequest(%q): no body but ContentLength %d, expectContinue %v",
				s, r.ContentLength, r.expectContinue)
		}
	case bodyLength:
		if r.length <= 0 || r.length != r.ContentLength || r.TransferEncoding != nil {
			t.Errorf("readRequest(%q): length %d, ContentLength %d, TransferEncoding %q",
				s, r.length, r.ContentLength, r.TransferEncoding)
		}
	case bodyChunked:
		if r.ContentLength != -1 || len(r.TransferEncoding) != 1 || r.ProtoMinor != 1 {
			t.Errorf("readRequest(%q): chunked but ContentLength %d, TransferEncoding %q, %s",
				s, r.ContentLength, r.TransferEncoding, r.Proto)
		}
	default:
		t.Errorf("readRequest(%q): body kind %d", s, r.body)
	}
	if r.ProtoMinor == 0 && !r.keepAlive10 && !r.Close {
		t.Errorf("readRequest(%q): HTTP/1.0 without keep-alive but Close is false", s)
	}
}

// isTestToken reports whether s is an RFC 9110 token, independently of
// isToken.
func isTestToken(s string) bool {
	const delims = "\"(),/:;<=>?@[\\]{}"
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(delims, c) >= 0 {
			return false
		}
	}
	return true
}
