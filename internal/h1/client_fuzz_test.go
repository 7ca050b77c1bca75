package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzReadResponse holds answerReader to net/http's ReadResponse, read as
// Transport reads an answer to a POST: interim 1xx answers skipped, the
// body read whole under the same bound. Both ways: an answer ours takes
// and Transport refuses fails it, and so does the reverse; so does the
// same answer read with another status, body or keep-alive decision.
// answerIntendedDifference lists the differences meant.
func FuzzReadResponse(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, std := ourAnswer(data), stdAnswer(data)
		if !ours.same(std) && answerIntendedDifference(data, ours, std) == "" {
			t.Errorf("%q:\nh1:       %v\nnet/http: %v", data, ours, std)
		}
	})
}

// answerSeeds are the answers of issue 9 and their neighbours.
var answerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLOHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
	"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLOEVIL",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 101 Switching Protocols\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 20) + "Content-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length:\r\n\t5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\n Leading: space\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nHELLO",
	"HTTP/1.0 200 OK\r\n\r\nHELLO",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1   200\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200\tOK\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 099 Odd\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 OK\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 5\n\nHELLO",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nHEL\r\n2\r\nLO\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nHELLO\r\n0\r\nX-Sum: 5\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nHELLO\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nHELLO\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHELLO\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad trailer\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 5\r\n\r\nHELLO",
	"HTTP/1.1 200 OK\r\nX-Odd: a\r\r\nContent-Length: 5\r\n\r\nHELLO",
}

// answerOutcome is what a reader made of an answer. keep includes what
// the idle connection would show next: no bytes after the answer.
type answerOutcome struct {
	err    error
	status int
	body   string
	keep   bool
}

func (o answerOutcome) same(p answerOutcome) bool {
	if o.err != nil || p.err != nil {
		return (o.err != nil) == (p.err != nil)
	}
	return o.status == p.status && o.body == p.body && o.keep == p.keep
}

func (o answerOutcome) String() string {
	if o.err != nil {
		return "error: " + o.err.Error()
	}
	return fmt.Sprintf("%d %q keep=%t", o.status, o.body, o.keep)
}

func ourAnswer(data []byte) answerOutcome {
	rd := bytes.NewReader(data)
	r := answerReader{br: bufio.NewReaderSize(rd, clientBufSize)}
	status, body, keep, err := r.read()
	if err != nil {
		return answerOutcome{err: err}
	}
	// What's left unread is what the idle probe would find.
	return answerOutcome{status: status, body: string(body), keep: keep && rd.Len() == 0}
}

// stdAnswer reads data as Transport does (persistConn.readResponse and
// readLoop) with a body bounded as ours.
func stdAnswer(data []byte) answerOutcome {
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, clientBufSize) // Transport's default ReadBufferSize
	var resp *http.Response
	for {
		var err error
		if resp, err = http.ReadResponse(br, &http.Request{Method: "POST"}); err != nil {
			return answerOutcome{err: err}
		}
		if code := resp.StatusCode; code < 100 || code > 199 || code == 101 {
			break
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBody+1))
	if err != nil {
		return answerOutcome{err: err}
	}
	if len(body) > MaxAnswerBody {
		return answerOutcome{err: errors.New("body over MaxAnswerBody")}
	}
	// readLoop keeps a connection unless the answer closes it or is
	// informational, then drops it if anything arrives while it idles.
	keep := !resp.Close && resp.StatusCode > 199 && br.Buffered() == 0 && rd.Len() == 0
	return answerOutcome{status: resp.StatusCode, body: string(body), keep: keep}
}

// answerIntendedDifference says why ours may read data otherwise than
// Transport, or "" if it may not.
func answerIntendedDifference(data []byte, ours, std answerOutcome) string {
	switch {
	case errors.Is(ours.err, errAnswerHead) && std.err == nil && len(data) > maxAnswerHeader:
		return "ours bounds a head, interim answers' included, at maxAnswerHeader; Transport at 10 MiB"
	case errors.Is(ours.err, errAnswerSwitch) && std.err == nil && std.status == 101:
		return "a proxy cannot switch protocols: ours refuses 101, Transport returns it"
	case errors.Is(ours.err, errAnswerStatus) && std.err == nil && std.status < 100:
		return "status codes are 100-599 (RFC 9110 §15): ours refuses a code under 100 " +
			"(099, +99, -00), which Transport returns"
	}
	return ""
}

// TestReadResponseAllocatesNothing: reading an answer on a kept-alive
// connection reuses the buffers the answers before it grew.
func TestReadResponseAllocatesNothing(t *testing.T) {
	tests := []struct{ name, give string }{
		{"Content-Length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nHELLO"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHEL\r\n2\r\nLO\r\n0\r\n\r\n"},
		{"100 Continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO"},
		{"folded", "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nHELLO"},
		{"long line", "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 5\r\n\r\nHELLO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := strings.NewReader(tt.give)
			r := answerReader{br: bufio.NewReaderSize(rd, clientBufSize)}
			read := func() {
				rd.Reset(tt.give)
				r.br.Reset(rd)
				if _, body, _, err := r.read(); err != nil || string(body) != "HELLO" {
					t.Fatalf("read() = %q, %v; want \"HELLO\", nil", body, err)
				}
			}
			read() // grows the buffers
			if n := testing.AllocsPerRun(100, read); n != 0 {
				t.Errorf("read() allocates %v times; want 0", n)
			}
		})
	}
}
