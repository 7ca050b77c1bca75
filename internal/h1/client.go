package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"stringsvc/internal/rawio"
	"stringsvc/internal/sendwait"
)

// Client is a lean HTTP/1.1 client for one URL: it POSTs a body over
// kept-alive connections and reads the answer in the calling goroutine.
// It exists because the proxy hop's cost is what the service sells:
// net/http's client hands every request to a connection's write and read
// goroutines and back, and allocates per request; this does neither. fasthttp's HostClient was the other candidate, but it cannot
// abort a request when its context is cancelled, and a client that
// disconnects must cancel the upstream call.
//
// It speaks only what a proxy needs: one request shape, answers with
// Content-Length or chunked bodies, keep-alive unless the server says
// close. A context's deadline becomes the connection's deadline, and its
// cancellation cuts the connection short.
type Client struct {
	addr        string // host:port to dial
	head        []byte // request line and fixed headers, up to "Content-Length: "
	dialer      net.Dialer
	tls         *tls.Config // nil: plain TCP
	maxIdle     int
	idleTimeout time.Duration

	mu   sync.Mutex
	idle []*clientConn // most recently used last
}

type clientConn struct {
	net.Conn
	br       *bufio.Reader
	sender   *sendwait.Writer // nil over TLS
	out      []byte           // the request being written
	body     []byte           // reused for each answer's body
	lastUsed time.Time
	abort    func() // makes pending I/O fail; built once, not per call
}

// maxAnswerHeader bounds an answer's status line and headers.
const maxAnswerHeader = 16 << 10

// MaxAnswerBody bounds what a Client reads of an answer's body.
const MaxAnswerBody = 1 << 20

// NewClient returns a client POSTing bodies of contentType to target (http
// or https), keeping up to maxIdle connections alive.
func NewClient(target *url.URL, contentType string, maxIdle int) *Client {
	head := "POST " + target.RequestURI() + " HTTP/1.1\r\nHost: " + target.Host +
		"\r\nUser-Agent: stringsvc\r\nContent-Type: " + contentType + "\r\nContent-Length: "
	port := target.Port()
	var tlsConfig *tls.Config
	if target.Scheme == "https" {
		tlsConfig = &tls.Config{ServerName: target.Hostname()}
		if port == "" {
			port = "443"
		}
	} else if port == "" {
		port = "80"
	}
	return &Client{
		addr:        net.JoinHostPort(target.Hostname(), port),
		head:        []byte(head),
		tls:         tlsConfig,
		dialer:      net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle:     maxIdle,
		idleTimeout: 30 * time.Second,
	}
}

// errAnswer marks an answer that breaks HTTP/1.1.
var errAnswer = errors.New("malformed HTTP answer")

// Post sends body and calls read with the answer's status and body, which is
// only valid during the call. A kept-alive connection that turns out to be
// closed by the server before it answered is replaced once by a new one:
// the request never reached the server's handler.
func (h *Client) Post(ctx context.Context, body []byte, read func(status int, body []byte) error) error {
	for try := 0; ; try++ {
		cc, reused, err := h.conn(ctx)
		if err != nil {
			return err
		}
		status, answer, keep, err := h.roundTrip(ctx, cc, body)
		if err != nil {
			cc.Close()
			if reused && try == 0 && answer == nil && staleConn(err) && ctx.Err() == nil {
				continue
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return fmt.Errorf("POST %s: %w", h.addr, ctxErr)
			}
			return fmt.Errorf("POST %s: %w", h.addr, err)
		}
		err = read(status, answer)
		h.release(cc, keep && ctx.Err() == nil) // a cancelled call may have poisoned the deadline
		return err
	}
}

// staleConn reports whether err is what a server's close of an idle
// connection looks like from this side.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errConnReset)
}

var errConnReset = errors.New("connection reset before the answer")

func (h *Client) conn(ctx context.Context) (*clientConn, bool, error) {
	now := time.Now()
	h.mu.Lock()
	for len(h.idle) > 0 {
		cc := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(cc.lastUsed) < h.idleTimeout {
			h.mu.Unlock()
			return cc, true, nil
		}
		cc.Close()
	}
	h.mu.Unlock()
	var c net.Conn
	var err error
	if h.tls != nil {
		c, err = (&tls.Dialer{NetDialer: &h.dialer, Config: h.tls}).DialContext(ctx, "tcp", h.addr)
	} else {
		c, err = h.dialer.DialContext(ctx, "tcp", h.addr)
	}
	if err != nil {
		return nil, false, err
	}
	rw := rawio.New(c) // c itself over TLS: then no raw calls and no sendwait
	cc := &clientConn{Conn: c, br: bufio.NewReaderSize(rw, 4096)}
	cc.abort = func() { cc.SetDeadline(aLongTimeAgo) }
	if rc, ok := rw.(*rawio.Conn); ok {
		cc.sender = sendwait.New(rc.Raw())
	}
	return cc, false, nil
}

func (h *Client) release(cc *clientConn, keep bool) {
	if !keep {
		cc.Close()
		return
	}
	cc.lastUsed = time.Now()
	h.mu.Lock()
	if len(h.idle) < h.maxIdle {
		h.idle = append(h.idle, cc)
		cc = nil
	}
	h.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
}

// CloseIdle closes the kept-alive connections, for an instance that goes away.
func (h *Client) CloseIdle() {
	h.mu.Lock()
	idle := h.idle
	h.idle = nil
	h.mu.Unlock()
	for _, cc := range idle {
		cc.Close()
	}
}

// roundTrip writes one request and reads its answer. answer is non-nil
// once any byte of the answer arrived.
func (h *Client) roundTrip(ctx context.Context, cc *clientConn, body []byte) (status int, answer []byte, keep bool, err error) {
	// The context's own timer ends a call at its deadline, through this
	// AfterFunc: setting the connection's deadline on every call as well
	// costs a runtime timer update for nothing.
	stop := context.AfterFunc(ctx, cc.abort)
	defer stop()

	out := append(cc.out[:0], h.head...)
	out = append(strconv.AppendInt(out, int64(len(body)), 10), "\r\n\r\n"...)
	cc.out = append(out, body...)
	if err := cc.send(); err != nil {
		// Nothing of the request can have been handled without all of it.
		return 0, nil, false, fmt.Errorf("%w: %w", errConnReset, err)
	}
	return readAnswer(cc)
}

// send writes cc.out and, when it can, waits for the answer without the
// read that would fail first (internal/sendwait).
func (cc *clientConn) send() error {
	n := 0
	if cc.sender != nil && cc.br.Buffered() == 0 {
		var err error
		if n, err = cc.sender.WriteAndWait(cc.out, nil); err != nil && n < len(cc.out) {
			return err
		} else if err != nil {
			return nil // written; the wait's error comes back from the read
		}
	}
	if n < len(cc.out) {
		_, err := cc.Write(cc.out[n:])
		return err
	}
	return nil
}

// readAnswer parses a status line, headers and body from cc.br.
func readAnswer(cc *clientConn) (status int, body []byte, keep bool, err error) {
	line, err := cc.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, net.ErrClosed) || isReset(err) {
			err = errConnReset
		}
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, []byte{}, false, fmt.Errorf("%w: status line %q", errAnswer, trimCRLF(line))
	}
	keep = line[7] == '1'
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return 0, []byte{}, false, fmt.Errorf("%w: status line %q", errAnswer, trimCRLF(line))
	}
	contentLength, chunked := -1, false
	for headerBytes := len(line); ; {
		line, err = cc.br.ReadSlice('\n')
		if err != nil {
			return 0, []byte{}, false, err
		}
		if headerBytes += len(line); headerBytes > maxAnswerHeader {
			return 0, []byte{}, false, fmt.Errorf("%w: header over %d bytes", errAnswer, maxAnswerHeader)
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return 0, []byte{}, false, fmt.Errorf("%w: header line %q", errAnswer, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytesEqualFoldASCII(name, "Content-Length"):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || (contentLength >= 0 && n != contentLength) {
				return 0, []byte{}, false, fmt.Errorf("%w: Content-Length %q", errAnswer, value)
			}
			contentLength = n
		case bytesEqualFoldASCII(name, "Transfer-Encoding"):
			if !bytesEqualFoldASCII(value, "chunked") {
				return 0, []byte{}, false, fmt.Errorf("%w: Transfer-Encoding %q", errAnswer, value)
			}
			chunked = true
		case bytesEqualFoldASCII(name, "Connection"):
			if bytesEqualFoldASCII(value, "close") {
				keep = false
			} else if bytesEqualFoldASCII(value, "keep-alive") {
				keep = true
			}
		}
	}
	if status < 200 {
		return 0, []byte{}, false, fmt.Errorf("%w: unexpected informational status %d", errAnswer, status)
	}
	switch {
	case chunked:
		body, err = readChunked(cc.br, cc.body[:0])
	case contentLength > MaxAnswerBody:
		return 0, []byte{}, false, fmt.Errorf("%w: body of %d bytes", errAnswer, contentLength)
	case contentLength >= 0:
		body = grow(cc.body[:0], contentLength)
		_, err = io.ReadFull(cc.br, body)
	case status == 204 || status == 304:
		body = cc.body[:0]
	default: // the body ends when the server closes the connection
		body, err = readAllBounded(cc.br, cc.body[:0])
		keep = false
	}
	if err != nil {
		return 0, []byte{}, false, err
	}
	cc.body = body
	return status, body, keep, nil
}

func readChunked(br *bufio.Reader, dst []byte) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(trimCRLF(line), []byte{';'})
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil || len(dst)+int(n) > MaxAnswerBody {
			return nil, fmt.Errorf("%w: chunk size %q", errAnswer, trimCRLF(line))
		}
		if n == 0 {
			for { // trailers, then the empty line
				line, err := br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(trimCRLF(line)) == 0 {
					return dst, nil
				}
			}
		}
		start := len(dst)
		dst = grow(dst, start+int(n))
		if _, err := io.ReadFull(br, dst[start:]); err != nil {
			return nil, err
		}
		if crlf, err := br.ReadSlice('\n'); err != nil || len(trimCRLF(crlf)) != 0 {
			return nil, fmt.Errorf("%w: chunk not followed by CRLF", errAnswer)
		}
	}
}

func readAllBounded(br *bufio.Reader, dst []byte) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(br, MaxAnswerBody+1))
	if len(b) > MaxAnswerBody {
		return nil, fmt.Errorf("%w: body over %d bytes", errAnswer, MaxAnswerBody)
	}
	return append(dst, b...), err
}

// grow returns b resliced to n bytes, reallocated if its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n, max(n, 2*cap(b)))
}

func trimCRLF(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

func bytesEqualFoldASCII(b []byte, s string) bool {
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

func isReset(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && !opErr.Timeout()
}
