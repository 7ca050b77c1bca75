package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
)

// request is a parsed request and how its body is framed.
type request struct {
	*http.Request
	body           bodyKind
	length         int64 // for bodyLength
	expectContinue bool
	keepAlive10    bool // an HTTP/1.0 client asked for keep-alive

	// Request points to std, and the response is kept here as well: one
	// allocation for the three.
	std  http.Request
	resp response
}

// readRequest reads a request line and headers from br: at most maxHeader
// bytes in all. A request it refuses comes back as a *requestError; any
// other error is the connection's.
//
// All the header text is copied into one string, and the method, target,
// names and values are substrings of it: one allocation for the text
// instead of one per field.
func readRequest(br *bufio.Reader, maxHeader int) (*request, error) {
	text, err := readHead(br, maxHeader)
	if err != nil {
		return nil, err
	}
	line, rest, _ := strings.Cut(text, "\n")
	method, target, proto, err := parseRequestLine(strings.TrimSuffix(line, "\r"))
	if err != nil {
		return nil, err
	}
	r := new(request)
	r.std = http.Request{Method: method, Proto: proto, RequestURI: target}
	r.Request = &r.std
	if proto == "HTTP/1.1" {
		r.ProtoMajor, r.ProtoMinor = 1, 1
	} else {
		r.ProtoMajor, r.ProtoMinor = 1, 0
	}
	if r.URL, err = url.ParseRequestURI(target); err != nil {
		return nil, badRequest("malformed request target")
	}
	if err := r.parseHeaders(rest); err != nil {
		return nil, err
	}
	return r, nil
}

// readHead returns the request line and header lines, with the empty line
// that ends them. Empty lines before the request line are skipped, as RFC
// 9112 (2.2) allows.
func readHead(br *bufio.Reader, maxHeader int) (string, error) {
	for skipped := 0; ; skipped++ {
		b, err := br.Peek(1)
		if err != nil {
			return "", err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		if line, err := br.ReadSlice('\n'); err != nil || !emptyLine(line) || skipped > 4 {
			if err != nil && err != bufio.ErrBufferFull {
				return "", err
			}
			return "", badRequest("malformed request line")
		}
	}
	// The usual case: the whole head is in br's buffer already.
	if end := headEnd(br); end >= 0 {
		if end > maxHeader {
			return "", errHeaderTooLarge
		}
		head, _ := br.Peek(end)
		text := string(head)
		br.Discard(end)
		return text, nil
	}
	var acc []byte
	lineStart := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(acc)+len(line) > maxHeader {
			return "", errHeaderTooLarge
		}
		acc = append(acc, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		if emptyLine(acc[lineStart:]) {
			return string(acc), nil
		}
		lineStart = len(acc)
	}
}

var errHeaderTooLarge = &requestError{status: http.StatusRequestHeaderFieldsTooLarge, msg: "request header too large"}

func emptyLine(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}

// headEnd returns how many buffered bytes of br make up a whole head, its
// final empty line included, or -1 if its end is not buffered yet.
func headEnd(br *bufio.Reader) int {
	buf, _ := br.Peek(br.Buffered())
	for i := 0; i < len(buf); {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1
		}
		if emptyLine(buf[i : i+j+1]) {
			return i + j + 1
		}
		i += j + 1
	}
	return -1
}

// parseRequestLine splits "METHOD target HTTP/1.x".
func parseRequestLine(line string) (method, target, proto string, err error) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !isToken(method) || !validTarget(target) {
		return "", "", "", badRequest("malformed request line")
	}
	switch proto {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		// Another HTTP/x.y version, as net/http parses one: 505. Not even
		// that: 400.
		if len(proto) == len("HTTP/1.1") && strings.HasPrefix(proto, "HTTP/") &&
			isDigits(proto[5:6]) && proto[6] == '.' && isDigits(proto[7:]) {
			return "", "", "", &requestError{status: http.StatusHTTPVersionNotSupported, msg: "HTTP version not supported"}
		}
		return "", "", "", badRequest("malformed HTTP version")
	}
	return method, target, proto, nil
}

// parseHeaders fills r's header map from the header lines in text and
// works out the body's framing and the connection's fate.
func (r *request) parseHeaders(text string) error {
	n := strings.Count(text, "\n") + 1
	r.Header = make(http.Header, n)
	values := make([]string, 0, n) // one backing array, a cap-1 slice per name
	var contentLength, transferEncoding, host, connection, expect []string
	for text != "" {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return badRequest("obsolete header line folding")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !isToken(name) {
			return badRequest("malformed header line")
		}
		value = trimOWS(value)
		if !validValue(value) {
			return badRequest("invalid header value")
		}
		name = canonicalKey(name)
		switch name {
		case "Host":
			host = append(host, value)
			continue // net/http keeps Host out of the map as well
		case "Content-Length":
			contentLength = append(contentLength, value)
		case "Transfer-Encoding":
			transferEncoding = append(transferEncoding, value)
			continue // the framing is in r.TransferEncoding; net/http drops the header too
		case "Connection":
			connection = append(connection, value)
		case "Expect":
			expect = append(expect, value)
		}
		if vs, ok := r.Header[name]; ok {
			r.Header[name] = append(vs, value)
			continue
		}
		values = append(values, value)
		r.Header[name] = values[len(values)-1 : len(values) : len(values)]
	}

	// As net/http, for HTTP/1.0 caches (RFC 9111 5.4): Pragma: no-cache
	// stands for a missing Cache-Control.
	if p := r.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := r.Header["Cache-Control"]; !ok {
			r.Header["Cache-Control"] = []string{"no-cache"}
		}
	}
	// In net/http's order, so that a head with several faults gets the
	// same status: framing before the Host, the expectation last.
	if len(host) > 1 {
		return badRequest("too many Host headers")
	}
	r.parseConnection(connection)
	if err := r.parseFraming(transferEncoding, contentLength); err != nil {
		return err
	}
	if err := r.parseHost(host); err != nil {
		return err
	}
	// As net/http: the first Expect value decides, in HTTP/1.0 as well;
	// one that names 100-continue asks for it, any other but an empty one
	// is refused.
	switch {
	case len(expect) == 0:
	case containsToken(expect[0], "100-continue"):
		r.expectContinue = r.ProtoMinor == 1 && r.body != bodyNone
	case expect[0] != "":
		return &requestError{status: http.StatusExpectationFailed, msg: "unsupported expectation"}
	}
	return nil
}

// parseConnection sets r.Close and r.keepAlive10 from the Connection
// header's values.
func (r *request) parseConnection(values []string) {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = trimOWS(tok); {
			case asciiEqualFold(tok, "close"):
				r.Close = true
			case asciiEqualFold(tok, "keep-alive") && r.ProtoMinor == 0:
				r.keepAlive10 = true
			}
		}
	}
	if r.ProtoMinor == 0 && !r.keepAlive10 {
		r.Close = true
	}
}

// parseFraming works out how the body is framed from the Transfer-Encoding
// and Content-Length header values.
func (r *request) parseFraming(transferEncoding, contentLength []string) error {
	if len(transferEncoding) > 0 {
		if len(transferEncoding) > 1 || !asciiEqualFold(transferEncoding[0], "chunked") {
			return &requestError{status: http.StatusNotImplemented, msg: "unsupported transfer encoding"}
		}
		if len(contentLength) > 0 || r.ProtoMinor == 0 {
			return badRequest("Transfer-Encoding with Content-Length or in HTTP/1.0")
		}
		r.body, r.ContentLength, r.TransferEncoding = bodyChunked, -1, []string{"chunked"}
		return nil
	}
	if len(contentLength) == 0 {
		return nil
	}
	for _, v := range contentLength[1:] {
		if v != contentLength[0] {
			return badRequest("conflicting Content-Length headers")
		}
	}
	// Digits only, as net/http: ParseInt alone takes "-0" and "+1".
	length, err := strconv.ParseInt(contentLength[0], 10, 64)
	if err != nil || !isDigits(contentLength[0]) {
		return badRequest("invalid Content-Length")
	}
	r.ContentLength = length
	if length > 0 {
		r.body, r.length = bodyLength, length
	}
	return nil
}

// parseHost sets r.Host from the target or the Host header's one value.
func (r *request) parseHost(host []string) error {
	switch {
	case len(host) == 1:
		if !validHost(host[0]) {
			return badRequest("malformed Host header")
		}
		r.Host = host[0]
	case r.ProtoMinor == 1:
		return badRequest("missing required Host header")
	}
	if r.URL.Host != "" { // absolute-form target
		r.Host = r.URL.Host
	}
	return nil
}

// readTrailer reads the trailer section that ends a chunked body (RFC 9112
// 7.1.2), up to its empty line, and drops it: h1 does not fill
// Request.Trailer. Left unread, it would be taken for the next request.
func readTrailer(br *bufio.Reader) error {
	for size := 0; ; {
		line, err := br.ReadSlice('\n')
		if size += len(line); err == bufio.ErrBufferFull || size > maxTrailerBytes {
			return errTrailerTooLarge
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if emptyLine(line) {
			return nil
		}
		name, value, ok := strings.Cut(strings.TrimRight(string(line), "\r\n"), ":")
		if !ok || !isToken(name) || !validValue(value) {
			return errMalformedTrailer
		}
	}
}

// maxTrailerBytes bounds a request's trailer section, as net/http's
// buffer size does.
const maxTrailerBytes = 4096

var (
	errTrailerTooLarge  = errors.New("h1: chunked body trailer too large")
	errMalformedTrailer = errors.New("h1: malformed chunked body trailer")
)
