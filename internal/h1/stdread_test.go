package h1

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// The reference FuzzReadRequest holds readRequest to: net/http's server as
// it reads a request head, with its unexported helpers copied.

// stdRead reads s as net/http's server reads a request head: http.ReadRequest
// under the server's read limit, then the checks conn.readRequest and
// conn.serve make before they call the handler (net/http/server.go). It
// returns the request as the handler would see it and readAccepted, or the
// status net/http would answer with, or readNoAnswer.
func stdRead(s string) (*http.Request, int) {
	lr := &io.LimitedReader{R: strings.NewReader(s), N: fuzzMaxHeader + 4096} // initialReadLimitSize
	req, err := http.ReadRequest(bufio.NewReaderSize(lr, 4096))
	if err != nil {
		switch msg := err.Error(); {
		case lr.N <= 0: // hitReadLimit
			return nil, http.StatusRequestHeaderFieldsTooLarge
		case err == io.EOF: // isCommonNetReadError
			return nil, readNoAnswer
		case strings.HasPrefix(msg, "unsupported transfer encoding"),
			strings.HasPrefix(msg, "too many transfer encodings"): // unsupportedTEError
			return nil, http.StatusNotImplemented
		default:
			return nil, http.StatusBadRequest
		}
	}
	isH2Upgrade := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	if req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
		return nil, http.StatusHTTPVersionNotSupported
	}
	// ReadRequest drops the Host lines the server looks at: read them as it
	// does, with textproto.
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(s)))
	tp.ReadLine()
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		panic(fmt.Sprintf("ReadMIMEHeader(%+q) after ReadRequest succeeded: %v", s, err))
	}
	hosts, haveHost := mh["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && !isH2Upgrade && req.Method != "CONNECT" {
		return nil, http.StatusBadRequest
	}
	if len(hosts) == 1 && !stdValidHost(hosts[0]) {
		return nil, http.StatusBadRequest
	}
	for name, values := range req.Header {
		if !isTestToken(name) || slices.ContainsFunc(values, invalidTestValue) {
			return nil, http.StatusBadRequest
		}
	}
	if !stdHasToken(req.Header.Get("Expect"), "100-continue") && req.Header.Get("Expect") != "" {
		return nil, http.StatusExpectationFailed
	}
	return req, readAccepted
}

// stdHasToken is net/http's hasToken (net/http/header.go): whether token is
// in v between a start or end and a space, comma or tab, in ASCII case.
func stdHasToken(v, token string) bool {
	boundary := func(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
	for sp := 0; sp+len(token) <= len(v); sp++ {
		end := sp + len(token)
		if (sp > 0 && !boundary(v[sp-1])) || (end < len(v) && !boundary(v[end])) {
			continue
		}
		if testASCIIEqualFold(v[sp:end], token) {
			return true
		}
	}
	return false
}

func testASCIIEqualFold(s, t string) bool {
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(t[i]) {
			return false
		}
	}
	return true
}

// stdValidHost is httpguts.ValidHostHeader: the bytes of a host, an IPv6
// literal and a port.
func stdValidHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		alnum := '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alnum && !strings.ContainsRune("!$%&'()*+,-.:;=[]_~", rune(c)) {
			return false
		}
	}
	return true
}

// invalidTestValue reports whether v has a control character other than
// tab, as httpguts.ValidHeaderFieldValue refuses.
func invalidTestValue(v string) bool {
	return strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
}
