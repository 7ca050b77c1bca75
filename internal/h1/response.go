package h1

import (
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the http.ResponseWriter of one request. The body is held back
// (up to maxBufferedBody) so that the head, with a Content-Length, and the
// body leave in one write when the handler returns.
type response struct {
	c      *conn
	req    *request
	header http.Header
	start  time.Time  // when the request began: its Date
	body   bodyReader // the request's body, kept here to save an allocation

	status      int
	wroteHeader bool  // the handler chose a status (or wrote)
	streaming   bool  // the head is on the wire; the body follows as it comes
	chunked     bool  // streaming with chunked encoding
	written     int64 // body bytes the handler wrote
	length      int64 // the handler's Content-Length when streaming, or -1
	buf         []byte
	closeAfter  bool
	err         error // a failed write: the client is gone

	// The Content-Length finish works out, written by appendHead: not put
	// in the header map, which would cost two allocations per response.
	sayLength   bool
	finalLength int64
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
)

func (w *response) serve() {
	w.buf = w.c.bodyBuf[:0]
	w.c.s.Handler.ServeHTTP(w, w.req.Request)
	w.finish()
	w.c.bodyBuf = w.buf[:0]
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.wroteHeader {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols { // informational: sent now, more follows
		if w.streaming || w.req.ProtoMinor == 0 {
			return
		}
		head := appendStatusLine(w.c.out[:0], code)
		head = appendHeader(head, w.header)
		w.c.out = append(head, "\r\n"...)
		w.write(w.c.out)
		return
	}
	w.wroteHeader = true
	w.status = code
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.req.Method == http.MethodHead { // no body; keep what sniffing needs
		if room := sniffLen - len(w.buf); room > 0 {
			w.buf = append(w.buf, p[:min(room, len(p))]...)
		}
		return len(p), nil
	}
	if !w.streaming && len(w.buf)+len(p) > maxBufferedBody {
		w.startStreaming(p)
	}
	if !w.streaming {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if w.length >= 0 && w.written > w.length {
		// Past the declared length the bytes would be read as the start of
		// the next response: refuse them, as net/http does.
		w.written -= int64(len(p))
		w.closeAfter = true
		return 0, http.ErrContentLength
	}
	if w.chunked && len(p) > 0 {
		w.c.out = append(strconv.AppendInt(w.c.out[:0], int64(len(p)), 16), "\r\n"...)
		w.c.out = append(append(w.c.out, p...), "\r\n"...)
		w.write(w.c.out)
	} else {
		w.write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Flush sends what is buffered now; the rest of the body follows in chunks.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.streaming && w.req.Method != http.MethodHead && bodyAllowed(w.status) {
		w.startStreaming(nil)
	}
}

// startStreaming sends the head and what the body buffer holds. The body
// is then chunked, unless the handler set a Content-Length or the client
// speaks HTTP/1.0 (then the body ends with the connection).
func (w *response) startStreaming(p []byte) {
	w.streaming = true
	delete(w.header, "Transfer-Encoding") // the framing is h1's to choose
	w.length = -1
	if v, ok := w.header["Content-Length"]; ok {
		n, err := strconv.ParseInt(textproto.TrimString(firstValue(v)), 10, 64)
		if err != nil || n < 0 {
			w.c.s.logf("h1: invalid Content-Length %q from the handler", v)
			delete(w.header, "Content-Length")
		} else {
			w.length = n
		}
	}
	if w.length >= 0 && int64(len(w.buf)) > w.length { // written before it streamed
		w.buf = w.buf[:w.length]
		w.closeAfter = true
	}
	switch {
	case w.length >= 0:
	case w.req.ProtoMinor == 0:
		w.closeAfter = true
	default:
		w.chunked = true
		w.header.Set("Transfer-Encoding", "chunked")
	}
	w.sniff(p)
	head := w.appendHead(w.c.out[:0])
	if len(w.buf) > 0 {
		if w.chunked {
			head = append(strconv.AppendInt(head, int64(len(w.buf)), 16), "\r\n"...)
			head = append(append(head, w.buf...), "\r\n"...)
		} else {
			head = append(head, w.buf...)
		}
		w.buf = w.buf[:0]
	}
	w.c.out = head
	w.write(head)
}

// finish completes the response once the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.streaming {
		if w.chunked {
			w.write([]byte("0\r\n\r\n"))
		}
		if w.length >= 0 && w.length != w.written {
			w.closeAfter = true // the body did not match its length: the stream is out of step
		}
		return
	}
	// Read what is left of the request's body first, so the head can say
	// whether the connection stays open.
	if !w.body.drain() {
		w.closeAfter = true
	}
	delete(w.header, "Transfer-Encoding") // the framing is h1's to choose
	switch {
	case w.req.Method == http.MethodHead:
		w.sniff(nil)
		if _, ok := w.header["Content-Length"]; !ok && w.written > 0 {
			w.sayLength, w.finalLength = true, w.written
		}
		w.buf = w.buf[:0]
	case bodyAllowed(w.status):
		w.sniff(nil)
		delete(w.header, "Content-Length")
		w.sayLength, w.finalLength = true, int64(len(w.buf))
	default:
		delete(w.header, "Content-Length")
	}
	out := w.appendHead(w.c.out[:0])
	out = append(out, w.buf...)
	w.c.out = out
	w.write(out)
}

// sniff sets a Content-Type the handler left out, as net/http does, from
// the start of the body: the buffer, then p (a write that does not fit).
func (w *response) sniff(p []byte) {
	if _, ok := w.header["Content-Type"]; ok || len(w.buf)+len(p) == 0 {
		return
	}
	data := w.buf
	if len(data) < sniffLen && len(p) > 0 {
		data = append(data[:len(data):len(data)], p[:min(len(p), sniffLen-len(data))]...)
	}
	w.header["Content-Type"] = []string{http.DetectContentType(data)}
}

// sniffLen is how much of a body http.DetectContentType looks at.
const sniffLen = 512

func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (w *response) keepAlive() bool {
	return !w.closeAfter && !w.req.Close && !w.c.s.closing.Load()
}

// appendHead appends the status line, the handler's headers, Date and
// Connection.
func (w *response) appendHead(b []byte) []byte {
	b = appendStatusLine(b, w.status)
	if hasToken(w.header["Connection"], "close") {
		w.closeAfter = true
		delete(w.header, "Connection") // said below, once
	}
	b = appendHeader(b, w.header)
	if w.sayLength {
		b = append(b, "Content-Length: "...)
		b = append(strconv.AppendInt(b, w.finalLength, 10), "\r\n"...)
	}
	if _, ok := w.header["Date"]; !ok {
		b = append(b, "Date: "...)
		b = append(b, httpDate(w.start)...)
		b = append(b, "\r\n"...)
	}
	switch {
	case !w.keepAlive():
		w.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	case w.req.ProtoMinor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, "\r\n"...)
}

func (w *response) write(p []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.c.rw.Write(p); err != nil {
		w.err = err
		w.closeAfter = true
	}
}

func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader writes h, skipping invalid names and turning line breaks in
// values into spaces, as net/http does.
func appendHeader(b []byte, h http.Header) []byte {
	for name, values := range h {
		if !isToken(name) {
			continue
		}
		for _, v := range values {
			b = append(b, name...)
			b = append(b, ": "...)
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c == '\r' || c == '\n' {
					c = ' '
				}
				b = append(b, c)
			}
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// hasToken reports whether the comma-separated values hold token, in ASCII
// case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if asciiEqualFold(trimOWS(t), token) {
				return true
			}
		}
	}
	return false
}

func bodyAllowed(status int) bool {
	return !(status >= 100 && status < 200) && status != http.StatusNoContent && status != http.StatusNotModified
}

// httpDate returns now as an HTTP date, formatted once a second.
func httpDate(now time.Time) []byte {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &date{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	lastDate.Store(d)
	return d.text
}

type date struct {
	sec  int64
	text []byte
}

var lastDate atomic.Pointer[date]

// bodyReader is a request's body: Content-Length or chunked framing over the
// connection's reader. It sends 100 Continue before the first read when
// the client asked for it, and starts the disconnect watch at its end.
type bodyReader struct {
	c            *conn
	w            *response
	chunks       io.Reader // for chunked bodies
	left         int64     // for Content-Length bodies
	started      bool
	eof          bool
	closed       bool
	readErr      error
	sentContinue bool // 100 Continue went out
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.readErr != nil {
		return 0, b.readErr
	}
	if !b.started {
		b.started = true
		if b.w.req.expectContinue {
			if b.w.streaming { // too late to invite the body
				b.readErr = errContinueTooLate
				b.w.closeAfter = true
				return 0, b.readErr
			}
			b.c.rw.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
			b.sentContinue = true
		}
		if b.w.req.body == bodyChunked {
			b.chunks = httputil.NewChunkedReader(b.c.br)
		}
	}
	var n int
	var err error
	if b.chunks != nil {
		n, err = b.chunks.Read(p)
		if err == io.EOF {
			if terr := readTrailer(b.c.br); terr != nil {
				err = terr
			}
		}
	} else {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.c.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == io.EOF {
		b.eof = true
		b.c.armWatch()
	} else if err != nil {
		b.readErr = err
		b.w.closeAfter = true
	}
	return n, err
}

// errContinueTooLate is what a handler reading the body gets when it
// started the response before inviting the body with 100 Continue.
var errContinueTooLate = errors.New("h1: request body read after the response started")

// Close stops the handler's reads; what is left is dropped after the
// handler returns.
func (b *bodyReader) Close() error {
	b.closed = true
	return nil
}

// unread reports whether the request has a body not read to its end.
func (b *bodyReader) unread() bool {
	return b.w.req.body != bodyNone && !b.eof
}

// drain reads and drops what the handler left of the body, and reports
// whether the connection can carry the next request.
func (b *bodyReader) drain() bool {
	switch {
	case b.w == nil || b.w.req.body == bodyNone || b.eof:
		return true
	case b.readErr != nil:
		return false
	case b.w.req.expectContinue && !b.sentContinue:
		return false // the client may or may not send it: the stream is ambiguous
	case b.w.req.body == bodyLength && b.left > maxDiscard:
		return false
	}
	b.closed = false
	n, err := io.Copy(io.Discard, io.LimitReader(b, maxDiscard+1))
	return err == nil && n <= maxDiscard && b.eof
}
