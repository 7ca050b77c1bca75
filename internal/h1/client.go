package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
// goroutines and back, and allocates per request; this does neither.
// fasthttp's HostClient was the other candidate, but it cannot abort a
// request when its context is cancelled, and a client that disconnects
// must cancel the upstream call.
//
// It speaks only what a proxy needs: one request shape, answers with
// Content-Length, chunked or close-delimited bodies, keep-alive unless
// the server says close. What it makes of an answer is held to what
// net/http's Transport makes of the same bytes (client_answer.go). A
// context's deadline becomes the connection's deadline, and its
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
	answer   answerReader
	sender   *sendwait.Writer // nil over TLS
	probe    idleProbe        // client_linux.go, client_other.go
	out      []byte           // the request being written
	lastUsed time.Time
	abort    func() // makes pending I/O fail; built once, not per call
}

// clientAbortTime is the deadline that makes a connection's pending I/O fail.
var clientAbortTime = time.Unix(1, 0)

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

// errNothingWritten marks a request of which no byte reached a
// connection, the one failure after which Post sends it again.
var errNothingWritten = errors.New("request not written")

// Post sends body and calls read with the answer's status and body, which is
// only valid during the call. header, nil for none, is more header lines
// for this request alone, each "Name: value\r\n": the request head is
// otherwise built once, so a header that nobody sends costs nothing.
//
// A request is sent again, on another connection, only when it failed on
// a kept-alive connection before any byte of it was written: the rule
// Transport applies to a POST (its nothingWrittenError; a POST is not
// idempotent, so it is never replayed once written, even if the server
// closed without answering). Connections the server closed, or spoke on,
// while idle are dropped before they are used (Client.conn), so the
// keep-alive race that once needed a broader retry is rare, and a
// request that may have reached a handler fails instead of running twice.
func (h *Client) Post(ctx context.Context, header, body []byte, read func(status int, body []byte) error) error {
	for try := 0; ; try++ {
		cc, reused, err := h.conn(ctx)
		if err != nil {
			return err
		}
		status, answer, keep, err := h.roundTrip(ctx, cc, header, body)
		if err != nil {
			cc.Close()
			if reused && try == 0 && errors.Is(err, errNothingWritten) && ctx.Err() == nil {
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

// conn returns an idle connection the server has said nothing on since
// its last answer, or a new one. reused reports which.
func (h *Client) conn(ctx context.Context) (cc *clientConn, reused bool, err error) {
	for cc = h.idleConn(); cc != nil; cc = h.idleConn() {
		if cc.probe.quiet() {
			return cc, true, nil
		}
		// The server closed it, or sent what nothing asked for: an answer
		// too many, or a 408 before closing. Reused, it would hand that to
		// the next request (issue 9); Transport drops it too ("Unsolicited
		// response received on idle HTTP channel").
		cc.Close()
	}
	cc, err = h.dial(ctx)
	return cc, false, err
}

func (h *Client) dial(ctx context.Context) (*clientConn, error) {
	var c net.Conn
	var err error
	if h.tls != nil {
		c, err = (&tls.Dialer{NetDialer: &h.dialer, Config: h.tls}).DialContext(ctx, "tcp", h.addr)
	} else {
		c, err = h.dialer.DialContext(ctx, "tcp", h.addr)
	}
	if err != nil {
		return nil, err
	}
	rw := rawio.New(c) // c itself over TLS: then no raw calls and no sendwait
	cc := &clientConn{Conn: c, answer: answerReader{br: bufio.NewReaderSize(rw, clientBufSize)}}
	cc.abort = func() { cc.SetDeadline(clientAbortTime) }
	if rc, ok := rw.(*rawio.Conn); ok {
		cc.sender = sendwait.New(rc.Raw())
	}
	cc.probe.init(rw)
	return cc, nil
}

// idleConn takes the most recently used idle connection that has not
// outlived idleTimeout, or returns nil.
func (h *Client) idleConn() *clientConn {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.idle) > 0 {
		cc := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if now.Sub(cc.lastUsed) < h.idleTimeout {
			return cc
		}
		cc.Close()
	}
	return nil
}

// release pools cc if keep, which answerReader.read only reports with
// nothing buffered after the answer: a pooled connection's buffer is
// always empty.
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

// roundTrip writes one request and reads its answer.
func (h *Client) roundTrip(ctx context.Context, cc *clientConn, header, body []byte) (
	status int, answer []byte, keep bool, err error) {
	// The context's own timer ends a call at its deadline, through this
	// AfterFunc: setting the connection's deadline on every call as well
	// costs a runtime timer update for nothing.
	stop := context.AfterFunc(ctx, cc.abort)
	defer stop()

	out := append(cc.out[:0], h.head...)
	out = append(strconv.AppendInt(out, int64(len(body)), 10), "\r\n"...)
	out = append(append(out, header...), "\r\n"...)
	cc.out = append(out, body...)
	if n, err := cc.send(); err != nil {
		if n == 0 {
			err = fmt.Errorf("%w: %w", errNothingWritten, err)
		}
		return 0, nil, false, err
	}
	return cc.answer.read()
}

// send writes cc.out and, when it can, waits for the answer without the
// read that would fail first (internal/sendwait). sendwait needs a server
// that has sent nothing yet: a new connection, or a pooled one, which had
// nothing buffered (Client.release) and nothing readable (Client.conn).
// It returns how much of cc.out it wrote.
func (cc *clientConn) send() (int, error) {
	n := 0
	if cc.sender != nil {
		var err error
		if n, err = cc.sender.WriteAndWait(cc.out, nil); err != nil && n < len(cc.out) {
			return n, err
		} else if err != nil {
			return n, nil // written; the wait's error comes back from the read
		}
	}
	if n < len(cc.out) {
		m, err := cc.Write(cc.out[n:])
		return n + m, err
	}
	return n, nil
}
