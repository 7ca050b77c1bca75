package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// fuzzMaxHeader is the MaxHeaderBytes both readers get in FuzzReadRequest.
const fuzzMaxHeader = 1 << 10

// Outcomes of reading a request head besides a refusal's status.
const (
	readAccepted = 0  // the handler is called
	readNoAnswer = -1 // the input ended first: the connection ends without an answer
)

// FuzzReadRequest holds readRequest to net/http's server both ways: what h1
// accepts net/http must accept, and what net/http accepts h1 must accept,
// unless intendedDifference says why not. When both accept, they must agree
// on the request, its framing above all: a disagreement on where a body
// ends is what request smuggling feeds on. When both refuse, they must
// agree on the status. It also checks that readRequest never panics and
// that what it accepts is well formed.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a/b?c=d HTTP/1.1\r\nHost: example.com:80\r\nAccept: */*\r\nX-Test: a\r\nX-Test: b\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n",
		"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"get / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
		// Protocol tokens compare in ASCII only (issue 9): KELVIN SIGN
		// (U+212A) and LONG S (U+017F) fold to k and s in Unicode, and
		// U+00A0 and U+0085 are Unicode spaces.
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\u212Aed\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: clo\u017fe\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: \u212Aeep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\u00a0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: \u0085keep-alive\r\n\r\n",
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
		"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
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
		r, got := h1Read(t, s)
		if got == readAccepted {
			checkRequest(t, s, r)
		}
		// Intended difference: h1 skips empty lines before the request
		// line, as RFC 9112 2.2 advises, where net/http does so only after
		// a POST. It must then read s as net/http reads what follows them.
		nr, want := stdRead(withoutLeadingEmptyLines(s))
		if got != want {
			if why := intendedDifference(s, got, want); why == "" {
				t.Fatalf("readRequest(%+q): %s; net/http: %s", s, outcomeString(got), outcomeString(want))
			}
			return
		}
		if got == readAccepted {
			compareRequests(t, s, r, nr)
		}
	})
}

// h1Read reads s with readRequest and returns the request and readAccepted, or
// the status of the refusal, or readNoAnswer. It fails t when readRequest
// fails in a way h1 does not document.
func h1Read(t *testing.T, s string) (*request, int) {
	t.Helper()
	r, err := readRequest(bufio.NewReaderSize(strings.NewReader(s), 4096), fuzzMaxHeader)
	var re *requestError
	switch {
	case err == nil:
		return r, readAccepted
	case errors.As(err, &re):
		switch re.status {
		case 400, 417, 431, 501, 505:
		default:
			t.Fatalf("readRequest(%+q): status %d; want one of 400, 417, 431, 501, 505", s, re.status)
		}
		return nil, re.status
	case errors.Is(err, io.EOF):
		return nil, readNoAnswer
	default:
		t.Fatalf("readRequest(%+q): %v; want a *requestError or io.EOF", s, err)
		return nil, 0
	}
}

// intendedDifference says why h1's outcome for s (got) may differ from
// net/http's (want), or returns "" if it may not. Every entry but the
// first is a choice README.md lists under "The HTTP server"; the first is
// a request neither serves.
func intendedDifference(s string, got, want int) string {
	h := summarizeHead(withoutLeadingEmptyLines(s))
	refused := func(o int) bool { return o != readAccepted }
	switch {
	case refused(got) && refused(want) && (got == readNoAnswer || want == readNoAnswer):
		return "the input ends inside the head: h1 waits for the rest, net/http may refuse " +
			"a line it read first; the client is served by neither"
	case (got == http.StatusRequestHeaderFieldsTooLarge || want == http.StatusRequestHeaderFieldsTooLarge) &&
		len(s) > fuzzMaxHeader:
		return "h1 holds the head to MaxHeaderBytes exactly, net/http grants 4 KiB more and " +
			"counts what it read ahead"
	case got == http.StatusHTTPVersionNotSupported && want == readAccepted:
		return "h1 speaks HTTP/1.0 and HTTP/1.1 only: 505 for HTTP/1.2 and up and for HTTP/2's " +
			"preface, which net/http passes to the handler"
	case got == http.StatusHTTPVersionNotSupported && refused(want):
		return "h1 checks the version first, net/http after the header lines and the framing: " +
			"a head with another fault besides gets that fault's status from net/http"
	case got == http.StatusBadRequest && want == readAccepted &&
		h.count("Transfer-Encoding") > 0 && h.count("Content-Length") > 0:
		return "h1 refuses Transfer-Encoding with Content-Length (RFC 9112 6.1 allows it); " +
			"net/http drops the Content-Length"
	case refused(got) && want == readAccepted && h.count("Transfer-Encoding") > 0 && h.proto == "HTTP/1.0":
		return "h1 refuses Transfer-Encoding in HTTP/1.0, whose framing RFC 9112 6.1 says to " +
			"treat as faulty; net/http ignores the header"
	case got == http.StatusBadRequest && h.folded:
		return "h1 refuses obs-fold (RFC 9112 5.2 lets a server refuse or unfold); net/http unfolds"
	case got == http.StatusBadRequest && want == http.StatusNotImplemented && h.count("Transfer-Encoding") > 0:
		return "both refuse a head with a malformed line and a Transfer-Encoding net/http does not " +
			"implement: h1 answers for the line as it reads it (400), net/http checks header names " +
			"only after the framing (501)"
	}
	return ""
}

// TestIntendedDifferences keeps intendedDifference honest: each entry
// still names a real difference, and the Unicode look-alikes of issue 9 are
// not among them.
func TestIntendedDifferences(t *testing.T) {
	tests := []struct {
		name     string
		give     string
		wantDiff bool
	}{
		{"input ends inside the head", "G(T / HTTP/1.1\r\nHost: x\r\n", true},
		{"header over MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n", true},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", true},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true},
		{"HTTP/2.0 with gzip", "POST / HTTP/2.0\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", true},
		{
			"Transfer-Encoding with Content-Length",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", true,
		},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n b\r\n\r\n", true},
		{"malformed line beside an unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n0 :\r\n\r\n", true},
		{"KELVIN SIGN in Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\u212Aed\r\n\r\n", false},
		{"LONG S in Connection", "GET / HTTP/1.1\r\nHost: x\r\nConnection: clo\u017fe\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := h1Read(t, tt.give)
			_, want := stdRead(withoutLeadingEmptyLines(tt.give))
			why := intendedDifference(tt.give, got, want)
			if tt.wantDiff && (got == want || why == "") {
				t.Errorf("h1 %s, net/http %s, intendedDifference %q; want a difference it explains",
					outcomeString(got), outcomeString(want), why)
			}
			if !tt.wantDiff && why != "" {
				t.Errorf("intendedDifference(h1 %s, net/http %s) = %q; want \"\"",
					outcomeString(got), outcomeString(want), why)
			}
		})
	}
}

// compareRequests fails t unless h1's and net/http's readings of s agree on
// everything a handler or the connection's framing depends on.
func compareRequests(t *testing.T, s string, r *request, nr *http.Request) {
	t.Helper()
	type view struct {
		Method, RequestURI, URL, Proto, Host string
		ContentLength                        int64
		Chunked, Close, ExpectContinue       bool
	}
	got := view{r.Method, r.RequestURI, r.URL.String(), r.Proto, r.Host,
		r.ContentLength, r.body == bodyChunked, r.Close, r.expectContinue}
	want := view{nr.Method, nr.RequestURI, nr.URL.String(), nr.Proto, nr.Host,
		nr.ContentLength, slices.Equal(nr.TransferEncoding, []string{"chunked"}), nr.Close,
		stdHasToken(nr.Header.Get("Expect"), "100-continue") && nr.ProtoAtLeast(1, 1) && nr.ContentLength != 0}
	if got != want {
		t.Errorf("readRequest(%+q) = %+v; net/http reads %+v", s, got, want)
	}
	for name, values := range nr.Header {
		if !slices.Equal(r.Header[name], values) {
			t.Errorf("readRequest(%+q): %s %q; net/http reads %q", s, name, r.Header[name], values)
		}
	}
	for name, values := range r.Header {
		if _, ok := nr.Header[name]; !ok {
			t.Errorf("readRequest(%+q): %s %q; net/http reads none", s, name, values)
		}
	}
}

// withoutLeadingEmptyLines returns s without the empty lines readHead skips
// before the request line: up to five.
func withoutLeadingEmptyLines(s string) string {
	for range 5 {
		switch {
		case strings.HasPrefix(s, "\n"):
			s = s[1:]
		case strings.HasPrefix(s, "\r\n"):
			s = s[2:]
		}
	}
	return s
}

// headSummary is what intendedDifference needs to know of a head, read without
// readRequest: the request line's version, the header names, obs-fold.
type headSummary struct {
	proto  string
	names  map[string]int // canonical name → lines
	folded bool           // a header line starts with a space or tab
}

func (h headSummary) count(name string) int { return h.names[name] }

func summarizeHead(s string) headSummary {
	text, _, _ := strings.Cut(s, "\r\n\r\n")
	text, _, _ = strings.Cut(text, "\n\n")
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var h headSummary
	if f := strings.Fields(lines[0]); len(f) == 3 {
		h.proto = f[2]
	}
	h.names = make(map[string]int)
	for _, line := range lines[1:] {
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			h.folded = true
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok {
			h.names[http.CanonicalHeaderKey(name)]++
		}
	}
	return h
}

func outcomeString(o int) string {
	switch o {
	case readAccepted:
		return "readAccepted"
	case readNoAnswer:
		return "no answer"
	}
	return fmt.Sprintf("refused with %d %s", o, http.StatusText(o))
}

// checkRequest checks what must hold of every request readRequest accepts.
func checkRequest(t *testing.T, s string, r *request) {
	t.Helper()
	if !isTestToken(r.Method) {
		t.Errorf("readRequest(%+q): Method %q is not a token", s, r.Method)
	}
	if r.URL == nil || r.RequestURI == "" || strings.ContainsAny(r.RequestURI, " \t\r\n\x00") {
		t.Errorf("readRequest(%+q): URL %v, RequestURI %q", s, r.URL, r.RequestURI)
	}
	switch {
	case r.Proto == "HTTP/1.1" && r.ProtoMajor == 1 && r.ProtoMinor == 1:
	case r.Proto == "HTTP/1.0" && r.ProtoMajor == 1 && r.ProtoMinor == 0:
	default:
		t.Errorf("readRequest(%+q): Proto %q %d.%d", s, r.Proto, r.ProtoMajor, r.ProtoMinor)
	}
	if strings.ContainsAny(r.Host, "\r\n\x00 ") {
		t.Errorf("readRequest(%+q): Host %q has a space or control character", s, r.Host)
	}
	for name, values := range r.Header {
		if !isTestToken(name) || http.CanonicalHeaderKey(name) != name || name == "Host" {
			t.Errorf("readRequest(%+q): header name %q", s, name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") || strings.Trim(v, " \t") != v {
				t.Errorf("readRequest(%+q): %s value %q", s, name, v)
			}
		}
	}
	switch r.body {
	case bodyNone:
		if r.ContentLength != 0 || r.expectContinue {
			t.Errorf("readRequest(%+q): no body but ContentLength %d, expectContinue %v",
				s, r.ContentLength, r.expectContinue)
		}
	case bodyLength:
		if r.length <= 0 || r.length != r.ContentLength || r.TransferEncoding != nil {
			t.Errorf("readRequest(%+q): length %d, ContentLength %d, TransferEncoding %q",
				s, r.length, r.ContentLength, r.TransferEncoding)
		}
	case bodyChunked:
		if r.ContentLength != -1 || len(r.TransferEncoding) != 1 || r.ProtoMinor != 1 {
			t.Errorf("readRequest(%+q): chunked but ContentLength %d, TransferEncoding %q, %s",
				s, r.ContentLength, r.TransferEncoding, r.Proto)
		}
	default:
		t.Errorf("readRequest(%+q): body kind %d", s, r.body)
	}
	if r.ProtoMinor == 0 && !r.keepAlive10 && !r.Close {
		t.Errorf("readRequest(%+q): HTTP/1.0 without keep-alive but Close is false", s)
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
