package h1

import (
	"bytes"
	"fmt"
	"io"
)

// Bodies of a Client's answers, read as Transport reads them.

// maxChunkOverhead bounds, as Transport's chunked reader does, how much of
// a chunked body may be chunk-size lines beyond 16 bytes per chunk plus
// twice the data.
const maxChunkOverhead = 16 << 10

// readChunked reads a chunked body and its trailer section as net/http's
// chunked reader does: chunk lines end with CRLF, extensions are skipped.
func (r *answerReader) readChunked() ([]byte, error) {
	dst := r.body[:0]
	var overhead int64
	for {
		line, err := r.br.ReadSlice('\n')
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		} else if err != nil {
			return nil, fmt.Errorf("%w: chunk line: %w", errAnswer, err)
		}
		if i := bytes.IndexByte(line, '\r'); i < 0 || i != len(line)-2 {
			return nil, fmt.Errorf("%w: chunk line %q", errAnswer, line)
		}
		line = line[:len(line)-2]
		overhead += int64(len(line)) + 2
		size := answerTrimTrailingOWS(line)
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i] // an extension
		}
		n, ok := answerParseHex(size)
		if !ok {
			return nil, fmt.Errorf("%w: chunk size %q", errAnswer, line)
		}
		if overhead = max(overhead-16-2*int64(n), 0); overhead > maxChunkOverhead {
			return nil, fmt.Errorf("%w: chunked body mostly overhead", errAnswer)
		}
		if n == 0 {
			return dst, r.readTrailer()
		}
		if n > uint64(MaxAnswerBody-len(dst)) {
			return nil, fmt.Errorf("%w: body over %d bytes", errAnswer, MaxAnswerBody)
		}
		start := len(dst)
		dst = answerGrow(dst, start+int(n))
		if _, err := io.ReadFull(r.br, dst[start:]); err != nil {
			return nil, err
		}
		if crlf, err := r.br.Peek(2); err != nil || crlf[0] != '\r' || crlf[1] != '\n' {
			return nil, fmt.Errorf("%w: chunk not followed by CRLF", errAnswer)
		}
		r.br.Discard(2)
	}
}

// readTrailer reads the trailer section after a chunked body: fields
// checked as a header's, all within the read buffer and ending with
// CRLF CRLF, as Transport requires.
func (r *answerReader) readTrailer() error {
	buf, err := r.br.Peek(2)
	switch {
	case len(buf) == 2 && buf[0] == '\r' && buf[1] == '\n':
		r.br.Discard(2)
		return nil
	case len(buf) < 2:
		return io.ErrUnexpectedEOF
	case err != nil:
		return err
	case !r.trailerEnds():
		return fmt.Errorf("%w: trailer over %d bytes", errAnswer, clientBufSize)
	}
	if c, _ := r.br.Peek(1); c[0] == ' ' || c[0] == '\t' {
		return fmt.Errorf("%w: trailer starts with a space", errAnswer)
	}
	r.left = maxAnswerHeader // the buffer bounds it
	for {
		f, err := r.field()
		if err != nil || len(f) == 0 {
			return err
		}
		if _, _, err := answerSplitField(f); err != nil {
			return err
		}
	}
}

// trailerEnds reports whether CRLF CRLF comes within the read buffer.
func (r *answerReader) trailerEnds() bool {
	for n := 4; ; n++ {
		buf, err := r.br.Peek(n)
		if len(buf) == n && string(buf[n-4:]) == "\r\n\r\n" {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// readToEOF reads a body that ends when the server closes the connection.
func (r *answerReader) readToEOF() ([]byte, error) {
	dst := r.body[:0]
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.br.Read(dst[len(dst):min(cap(dst), MaxAnswerBody+1)])
		if dst = dst[:len(dst)+n]; len(dst) > MaxAnswerBody {
			return nil, fmt.Errorf("%w: body over %d bytes", errAnswer, MaxAnswerBody)
		}
		if err == io.EOF {
			return dst, nil
		} else if err != nil {
			return nil, err
		}
	}
}

// answerParseHex parses a chunk size as net/http does: 1 to 16 hex digits.
func answerParseHex(v []byte) (n uint64, ok bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	for _, c := range v {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	return n, true
}

// answerGrow returns b resliced to n bytes, its bytes kept, reallocated
// if its capacity is short.
func answerGrow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	grown := make([]byte, n, max(n, 2*cap(b)))
	copy(grown, b)
	return grown
}
