package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// This file reads a Client's answers. What it makes of an answer (status,
// body, whether the connection stays open) is what net/http's Transport
// makes of the same bytes, RFC 9112's leniencies included, so that a
// backend cannot get a different outcome from the proxy than from a
// standard client (issue 9). FuzzReadResponse and
// TestClientMatchesTransport hold it there; answerIntendedDifference in
// client_fuzz_test.go lists where it differs on purpose.

// clientBufSize is the size of a connection's read buffer. It is also
// Transport's, and it bounds a chunk-size line and a trailer section as
// it does in Transport.
const clientBufSize = 4096

// maxAnswerHeader bounds the status lines and header fields of an answer,
// its interim (1xx) answers included, as Transport's
// MaxResponseHeaderBytes does. Transport's default is 10 MiB; a proxied
// answer carries a handful of short fields, so ours refuses a larger
// head than this (an intended difference), but a line longer than the
// read buffer is fine.
const maxAnswerHeader = 16 << 10

// MaxAnswerBody bounds what a Client reads of an answer's body.
const MaxAnswerBody = 1 << 20

var (
	// errAnswer marks an answer that breaks HTTP/1.1.
	errAnswer = errors.New("malformed HTTP answer")
	// errAnswerHead marks an answer whose head is over maxAnswerHeader.
	errAnswerHead = fmt.Errorf("%w: head over %d bytes", errAnswer, maxAnswerHeader)
	// errAnswerStatus marks a status line ours refuses.
	errAnswerStatus = fmt.Errorf("%w: bad status line", errAnswer)
	// errAnswerSwitch marks a 101 (Switching Protocols) answer.
	errAnswerSwitch = fmt.Errorf("%w: 101 Switching Protocols", errAnswer)
)

// answerReader reads answers from one connection. Its buffers are kept
// from one answer to the next, so that reading an answer on a kept-alive
// connection allocates nothing.
type answerReader struct {
	br   *bufio.Reader
	body []byte // the last answer's body
	long []byte // a line longer than br's buffer
	fold []byte // a header field folded over several lines
	left int    // bytes the head may still take
}

// answerHead is what an answer's status line and header say.
type answerHead struct {
	status       int
	major, minor int
	length       int64 // Content-Length; -1 if absent
	lengthDigits int   // its digits, leading zeros included
	badLength    bool  // invalid, or repeated with another value
	te           int   // Transfer-Encoding fields
	teChunked    bool  // the first one says chunked
	close        bool  // Connection has close
	keepAlive    bool  // Connection has keep-alive
	badTrailer   bool  // Trailer names a field that frames the message
}

// read reads one answer, skipping interim (1xx) answers as Transport
// does. keep reports whether the connection may carry another request:
// the server did not ask to close it, and nothing follows the answer in
// the buffer, which could only be an answer to nothing we sent: a server
// that answers twice would shift every later answer by one (issue 9).
func (r *answerReader) read() (status int, body []byte, keep bool, err error) {
	r.left = maxAnswerHeader
	var h answerHead
	var chunked bool
	var length int64
	for {
		if err := r.readHead(&h); err != nil {
			return 0, nil, false, err
		}
		if chunked, length, err = h.framing(); err != nil {
			return 0, nil, false, err
		}
		if h.status >= 200 {
			break
		}
		if h.status == 101 {
			return 0, nil, false, errAnswerSwitch
		}
	}
	keep = !h.shouldClose()
	switch {
	case !answerBodyAllowed(h.status):
		body = r.body[:0]
	case chunked:
		body, err = r.readChunked()
	case length > MaxAnswerBody:
		return 0, nil, false, fmt.Errorf("%w: body of %d bytes", errAnswer, length)
	case length >= 0:
		body = answerGrow(r.body[:0], int(length))
		_, err = io.ReadFull(r.br, body)
	default: // the body ends when the server closes the connection
		body, err = r.readToEOF()
		keep = false
	}
	if err != nil {
		return 0, nil, false, err
	}
	r.body = body
	return h.status, body, keep && r.br.Buffered() == 0, nil
}

// framing says how the body is delimited, as net/http's readTransfer
// decides: chunked, or length bytes (-1: until the server closes).
func (h *answerHead) framing() (chunked bool, length int64, err error) {
	major, minor := h.major, h.minor
	if major == 0 && minor == 0 {
		major, minor = 1, 1 // as net/http does: HTTP/0.0 frames as 1.1
	}
	// HTTP/1.0 has no Transfer-Encoding: Transport ignores it (issue 12785).
	if h.te > 0 && (major > 1 || major == 1 && minor >= 1) {
		if h.te > 1 || !h.teChunked {
			return false, 0, fmt.Errorf("%w: Transfer-Encoding", errAnswer)
		}
		chunked = true
	}
	if h.badLength {
		return false, 0, fmt.Errorf("%w: Content-Length", errAnswer)
	}
	if chunked && h.badTrailer {
		return false, 0, fmt.Errorf("%w: Trailer", errAnswer)
	}
	if chunked {
		return true, -1, nil
	}
	return false, h.length, nil
}

// shouldClose reports whether the answer closes the connection, as
// net/http's shouldClose does.
func (h *answerHead) shouldClose() bool {
	switch {
	case h.major < 1:
		return true
	case h.major == 1 && h.minor == 0:
		return h.close || !h.keepAlive
	}
	return h.close
}

// answerBodyAllowed reports whether an answer with status may have a
// body: 1xx, 204 and 304 never do, whatever their header says.
func answerBodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// readHead reads a status line and header into h.
func (r *answerReader) readHead(h *answerHead) error {
	*h = answerHead{length: -1}
	line, err := r.line()
	if err != nil {
		return err
	}
	if err := h.parseStatusLine(line); err != nil {
		return err
	}
	if c, err := r.br.Peek(1); err == nil && (c[0] == ' ' || c[0] == '\t') {
		return fmt.Errorf("%w: header starts with a space", errAnswer)
	}
	for {
		f, err := r.field()
		if err != nil {
			return err
		}
		if len(f) == 0 {
			return nil
		}
		name, value, err := answerSplitField(f)
		if err != nil {
			return err
		}
		h.note(name, value)
	}
}

// parseStatusLine parses "HTTP/1.1 200 OK" as net/http's ReadResponse
// does: spaces may repeat before the code, the reason may be absent. It
// refuses a code under 100, which ReadResponse takes.
func (h *answerHead) parseStatusLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return fmt.Errorf("%w %q", errAnswerStatus, line)
	}
	code := bytes.TrimLeft(line[sp+1:], " ")
	if i := bytes.IndexByte(code, ' '); i >= 0 {
		code = code[:i]
	}
	if len(code) != 3 || !answerDigits(code) || code[0] == '0' {
		return fmt.Errorf("%w %q", errAnswerStatus, line)
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	v := line[:sp] // "HTTP/1.1"; net/http takes any "HTTP/d.d"
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !answerDigits(v[5:6]) || v[6] != '.' ||
		!answerDigits(v[7:]) {
		return fmt.Errorf("%w %q", errAnswerStatus, line)
	}
	h.major, h.minor = int(v[5]-'0'), int(v[7]-'0')
	return nil
}

// note records what a header field says about framing and the connection.
func (h *answerHead) note(name, value []byte) {
	switch {
	case answerEqualFold(name, "Content-Length"):
		// Repeats must be the same string, as net/http requires.
		n, digits, ok := answerParseLength(value)
		if h.lengthDigits == 0 && !h.badLength {
			h.length, h.lengthDigits, h.badLength = n, digits, !ok
		} else if !ok || n != h.length || digits != h.lengthDigits {
			h.badLength = true
		}
	case answerEqualFold(name, "Transfer-Encoding"):
		if h.te == 0 {
			h.teChunked = answerEqualFold(value, "chunked")
		}
		h.te++
	case answerEqualFold(name, "Connection"):
		h.close = h.close || answerHasToken(value, "close")
		h.keepAlive = h.keepAlive || answerHasToken(value, "keep-alive")
	case answerEqualFold(name, "Trailer"):
		h.badTrailer = h.badTrailer || answerHasToken(value, "Content-Length") ||
			answerHasToken(value, "Transfer-Encoding") || answerHasToken(value, "Trailer")
	}
}

// line returns the next line without its "\n" or "\r\n", as bufio's
// ReadLine does, but whole however long it is, and counts it against the
// head's bound. It is valid until the next read from br.
func (r *answerReader) line() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], l...)
		for err == bufio.ErrBufferFull && len(r.long) <= r.left {
			l, err = r.br.ReadSlice('\n')
			r.long = append(r.long, l...)
		}
		l = r.long
	}
	if r.left -= len(l); r.left < 0 {
		return nil, errAnswerHead
	}
	if err != nil {
		if err == io.EOF && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// field returns the next header field, trimmed of spaces and tabs, or
// nothing at the header's end. A field folded over lines (obs-fold: a
// line that starts with a space or a tab continues the one before) is
// joined with single spaces, as net/textproto joins it for Transport;
// RFC 9112 §5.2 lets a client do so rather than refuse the answer.
func (r *answerReader) field() ([]byte, error) {
	line, err := r.line()
	if err != nil || len(line) == 0 {
		return line, err
	}
	if bytes.IndexByte(line, ':') < 0 {
		return nil, fmt.Errorf("%w: header line %q", errAnswer, line)
	}
	line = answerTrimOWS(line)
	copied := false
	for {
		if !copied && r.br.Buffered() == 0 { // Peek would refill br, over line
			line, copied = append(r.fold[:0], line...), true
		}
		next, err := r.br.Peek(1)
		if err != nil || next[0] != ' ' && next[0] != '\t' {
			if copied {
				r.fold = line
			}
			return line, nil // an error comes back from the next line
		}
		if !copied {
			line, copied = append(r.fold[:0], line...), true
		}
		for c, err := r.br.ReadByte(); err == nil; c, err = r.br.ReadByte() {
			if c != ' ' && c != '\t' {
				r.br.UnreadByte()
				break
			}
			r.left--
		}
		more, err := r.line()
		if err != nil {
			return nil, err
		}
		line = append(append(line, ' '), answerTrimOWS(more)...)
	}
}

// answerSplitField splits a field into its name and value, both checked
// as net/textproto checks them: the name is a token, but for spaces
// (issue 34540: such a name is kept and matches no known field), the
// value has no control bytes.
func answerSplitField(f []byte) (name, value []byte, err error) {
	i := bytes.IndexByte(f, ':')
	name, value = f[:i], f[i+1:]
	ok := len(name) > 0
	for _, c := range name {
		ok = ok && (answerTokenByte(c) || c == ' ')
	}
	for _, c := range value {
		ok = ok && (c >= ' ' && c != 0x7f || c == '\t')
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: header line %q", errAnswer, f)
	}
	return name, answerTrimOWS(value), nil
}

// answerParseLength parses a Content-Length as net/http does
// (strconv.ParseUint(v, 10, 63)), and says how many digits it has.
func answerParseLength(v []byte) (n int64, digits int, ok bool) {
	if len(v) == 0 || len(v) > 19 || !answerDigits(v) {
		return -1, len(v), false
	}
	var u uint64
	for _, c := range v {
		u = u*10 + uint64(c-'0')
	}
	if u >= 1<<63 {
		return -1, len(v), false
	}
	return int64(u), len(v), true
}

// answerHasToken reports whether the comma-separated list v holds token,
// in any case, as net/http's httpguts.HeaderValuesContainsToken does.
func answerHasToken(v []byte, token string) bool {
	for len(v) > 0 {
		elem := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if answerEqualFold(answerTrimOWS(elem), token) {
			return true
		}
	}
	return false
}

func answerDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func answerTrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return answerTrimTrailingOWS(b)
}

func answerTrimTrailingOWS(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// answerTokenByte reports whether c may be in a token (RFC 9110 §5.6.2).
func answerTokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func answerEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c1, c2 := b[i], s[i]
		if 'A' <= c1 && c1 <= 'Z' {
			c1 += 'a' - 'A'
		}
		if 'A' <= c2 && c2 <= 'Z' {
			c2 += 'a' - 'A'
		}
		if c1 != c2 {
			return false
		}
	}
	return true
}
