package h1_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"stringsvc/internal/h1"
)

// The client, held to net/http's Transport: a backend that misbehaves gets
// the same outcome from h1.Client as from a standard client (issue 9).

const (
	answerOK   = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO"
	answerEvil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
	answer408  = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	headOK     = "HTTP/1.1 200 OK\r\n"
	chunkedOK  = headOK + "Transfer-Encoding: chunked\r\n\r\n3\r\nHEL\r\n2\r\nLO\r\n0\r\n\r\n"
)

func TestClientMatchesTransport(t *testing.T) {
	long := strings.Repeat("a", 5000) // over the 4 KiB read buffer
	bigHead := strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 20)
	hugeHead := strings.Repeat("X-Pad: "+strings.Repeat("p", 1<<16)+"\r\n", 170)
	bigBody := strings.Repeat("b", h1.MaxAnswerBody+1)
	tests := []struct {
		name   string
		script clientScript
		// differs, when set, says why h1.Client means to differ from
		// Transport here; ours and std are then what each must give.
		differs   string
		ours, std clientResult
	}{
		{name: "Content-Length", script: say(answerOK)},
		{name: "extra 200 in the same write", script: say(answerOK + answerEvil)},
		{name: "extra 200 30ms later", script: say(answerOK).then(answerEvil)},
		{name: "204 then a stray 200", script: say("HTTP/1.1 204 No Content\r\n\r\n" + answerEvil)},
		{name: "body longer than Content-Length", script: say(answerOK + "EVIL")},
		{name: "100 Continue first", script: say("HTTP/1.1 100 Continue\r\n\r\n", answerOK)},
		{name: "103 Early Hints first", script: say(
			"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + answerOK)},
		{
			name:    "101 Switching Protocols",
			script:  say("HTTP/1.1 101 Switching Protocols\r\n\r\n").ending(scriptClose),
			differs: "a proxy cannot switch protocols: ours refuses 101, Transport returns it",
			ours:    clientResult{}, std: clientResult{ok: true, status: 101},
		},
		{name: "204 with Content-Length", script: say(
			"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")},
		{name: "304 with Content-Length", script: say(
			"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")},
		{name: "header line over the read buffer", script: say(
			headOK + "X-Long: " + long + "\r\nContent-Length: 5\r\n\r\nHELLO")},
		{
			name:    "head over maxAnswerHeader",
			script:  say(headOK + bigHead + "Content-Length: 5\r\n\r\nHELLO"),
			differs: "ours bounds a head at 16 KiB, Transport at 10 MiB",
			ours:    clientResult{}, std: clientResult{ok: true, status: 200, body: "HELLO"},
		},
		{name: "head over Transport's 10 MiB", script: say(
			headOK + hugeHead + "Content-Length: 5\r\n\r\nHELLO").ending(scriptClose)},
		{name: "half close after the answer", script: say(answerOK).ending(scriptHalfClose)},
		{name: "408 and close after the answer",
			script: say(answerOK).then(answer408).ending(scriptClose)},
		{name: "close after the answer", script: say(answerOK).ending(scriptClose)},
		{name: "folded header line", script: say(
			headOK + "X-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nHELLO")},
		{name: "folded Content-Length", script: say(headOK + "Content-Length:\r\n\t5\r\n\r\nHELLO")},
		{name: "Content-Length and chunked", script: say(
			headOK + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n")},
		{name: "two different Content-Lengths", script: say(
			headOK + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!").ending(scriptClose)},
		{name: "two equal Content-Lengths", script: say(
			headOK + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nHELLO")},
		{name: "HTTP/1.0 until close", script: say("HTTP/1.0 200 OK\r\n\r\nHELLO").ending(scriptClose)},
		{name: "HTTP/1.1 until close", script: say(headOK + "\r\nHELLO").ending(scriptClose)},
		{name: "HTTP/1.0 keep-alive", script: say(
			"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nHELLO")},
		{name: "slow drip", script: say(answerOK).dripped()},
		{name: "slow drip chunked", script: say(chunkedOK).dripped()},
		{name: "chunked", script: say(chunkedOK)},
		{name: "chunked with trailers", script: say(headOK +
			"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"3;ext=1\r\nHEL\r\n2\r\nLO\r\n0\r\nX-Sum: 5\r\n\r\n")},
		{name: "Connection: close", script: say(
			headOK + "Connection: close\r\nContent-Length: 5\r\n\r\nHELLO").ending(scriptClose)},
		{name: "close without an answer", script: say().ending(scriptClose)},
		{name: "no status code", script: say("HTTP/1.1 OK\r\n\r\n").ending(scriptClose)},
		{
			name:    "status 099",
			script:  say("HTTP/1.1 099 Odd\r\nContent-Length: 5\r\n\r\nHELLO"),
			differs: "status codes are 100-599 (RFC 9110 §15): ours refuses 099, Transport returns it",
			ours:    clientResult{}, std: clientResult{ok: true, status: 99, body: "HELLO"},
		},
		{name: "gzip Transfer-Encoding", script: say(
			headOK + "Transfer-Encoding: gzip\r\n\r\nHELLO").ending(scriptClose)},
		{name: "chunk line with a bare LF", script: say(
			headOK + "Transfer-Encoding: chunked\r\n\r\n5\nHELLO\r\n0\r\n\r\n").ending(scriptClose)},
		{name: "truncated body", script: say(
			headOK + "Content-Length: 10\r\n\r\nHELLO").ending(scriptClose)},
		{name: "body over MaxAnswerBody", script: say(
			fmt.Sprintf(headOK+"Content-Length: %d\r\n\r\n%s", len(bigBody), bigBody)).ending(scriptClose)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			std := clientPostTransport(t, startClientBackend(t, tt.script).url, "alice")

			b := startClientBackend(t, tt.script)
			c := h1.NewClient(b.url, "application/json", 2)
			t.Cleanup(c.CloseIdle)
			ours := clientPostH1(t, c, "alice")
			if tt.differs == "" {
				if ours != std {
					t.Errorf("h1.Client = %v; Transport = %v", ours, std)
				}
			} else {
				if ours != tt.ours {
					t.Errorf("h1.Client = %v; want %v (%s)", ours, tt.ours, tt.differs)
				}
				if std != tt.std {
					t.Errorf("Transport = %v; want %v (%s)", std, tt.std, tt.differs)
				}
			}

			// Whatever the first answer did to the connection, the next
			// request gets its own answer, and each reaches the backend once.
			b.waitScripted(t)
			want := clientResult{ok: true, status: 200, body: "BOB"}
			if got := clientPostH1(t, c, "bob"); got != want {
				t.Errorf("second h1.Client.Post = %v; want %v", got, want)
			}
			if got := b.posts.Load(); got != 2 {
				t.Errorf("backend read %d requests; want 2", got)
			}
		})
	}
}

// TestClientAnswersStayWithTheirRequests is issue 9's report: after a
// backend answered one request twice, every later answer on the
// connection went to the request after its own.
func TestClientAnswersStayWithTheirRequests(t *testing.T) {
	tests := []struct {
		name      string
		script    clientScript
		wantFirst clientResult
	}{
		{
			name:      "extra 200 in the same write",
			script:    say(headOK + "Content-Length: 5\r\n\r\nALICE" + answerEvil),
			wantFirst: clientResult{ok: true, status: 200, body: "ALICE"},
		},
		{
			name:      "extra 200 30ms later",
			script:    say(headOK + "Content-Length: 5\r\n\r\nALICE").then(answerEvil),
			wantFirst: clientResult{ok: true, status: 200, body: "ALICE"},
		},
		{
			name:      "204 then a stray 200",
			script:    say("HTTP/1.1 204 No Content\r\n\r\n" + answerEvil),
			wantFirst: clientResult{ok: true, status: 204},
		},
		{
			name:      "body longer than Content-Length",
			script:    say(headOK + "Content-Length: 5\r\n\r\nALICEEVIL"),
			wantFirst: clientResult{ok: true, status: 200, body: "ALICE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := startClientBackend(t, tt.script)
			c := h1.NewClient(b.url, "application/json", 1)
			t.Cleanup(c.CloseIdle)
			if got := clientPostH1(t, c, "alice"); got != tt.wantFirst {
				t.Errorf("Post(alice) = %v; want %v", got, tt.wantFirst)
			}
			b.waitScripted(t) // the stray answer is there before the next request
			for _, name := range []string{"bob", "carol", "dave", "erin"} {
				want := clientResult{ok: true, status: 200, body: strings.ToUpper(name)}
				if got := clientPostH1(t, c, name); got != want {
					t.Errorf("Post(%s) = %v; want %v", name, got, want)
				}
			}
			if got := b.posts.Load(); got != 5 {
				t.Errorf("backend read %d requests; want 5", got)
			}
		})
	}
}

// TestClientDoesNotResendAWrittenPost: a backend that read a request on a
// kept-alive connection and closed it without answering does not get the
// request again, from h1.Client as from Transport (a POST is not
// idempotent: Transport resends it only when none of it was written).
func TestClientDoesNotResendAWrittenPost(t *testing.T) {
	script := say(answerOK).ending(scriptCloseOnNext)
	want := clientResult{ok: true, status: 200, body: "HELLO"}
	clients := []struct {
		name    string
		newPost func(t *testing.T, u *url.URL) func(body string) clientResult
	}{
		{"h1.Client", func(t *testing.T, u *url.URL) func(string) clientResult {
			c := h1.NewClient(u, "application/json", 2)
			t.Cleanup(c.CloseIdle)
			return func(body string) clientResult { return clientPostH1(t, c, body) }
		}},
		{"Transport", func(t *testing.T, u *url.URL) func(string) clientResult {
			tr := &http.Transport{DisableCompression: true}
			t.Cleanup(tr.CloseIdleConnections)
			return func(body string) clientResult { return clientPostWith(t, tr, u, body) }
		}},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			b := startClientBackend(t, script)
			post := cl.newPost(t, b.url)
			if got := post("alice"); got != want {
				t.Fatalf("first Post = %v; want %v", got, want)
			}
			if got := post("bob"); got.ok {
				t.Errorf("second Post = %v; want an error", got)
			}
			if got := b.posts.Load(); got != 2 {
				t.Errorf("backend read %d requests; want 2", got)
			}
		})
	}
}

// clientResult is what a client made of an answer: ok is false for an
// error, and then status and body are zero.
type clientResult struct {
	ok     bool
	status int
	body   string
}

func (r clientResult) String() string {
	if !r.ok {
		return "error"
	}
	return fmt.Sprintf("%d %q", r.status, r.body)
}

const clientTestTimeout = 5 * time.Second

func clientPostH1(t *testing.T, c *h1.Client, body string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTestTimeout)
	defer cancel()
	var res clientResult
	err := c.Post(ctx, nil, []byte(body), func(status int, body []byte) error {
		res = clientResult{ok: true, status: status, body: string(body)}
		return nil
	})
	if err != nil {
		t.Logf("h1.Client.Post(%q): %v", body, err)
		return clientResult{}
	}
	return res
}

// clientPostTransport POSTs body with a Transport of its own.
func clientPostTransport(t *testing.T, u *url.URL, body string) clientResult {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return clientPostWith(t, tr, u, body)
}

func clientPostWith(t *testing.T, tr *http.Transport, u *url.URL, body string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", u.String(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Logf("Transport POST %q: %v", body, err)
		return clientResult{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, h1.MaxAnswerBody+1))
	if err != nil || len(b) > h1.MaxAnswerBody {
		t.Logf("Transport POST %q: body of %d bytes: %v", body, len(b), err)
		return clientResult{}
	}
	return clientResult{ok: true, status: resp.StatusCode, body: string(b)}
}

// TestClientPerRequestHeader: header lines given to Post go with that
// request alone, on a kept-alive connection too, and net/http's server reads
// them as headers.
func TestClientPerRequestHeader(t *testing.T) {
	seen := make(chan string, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Test-Header") + "|" + r.Header.Get("Other")
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := h1.NewClient(u, "application/json", 1)
	t.Cleanup(c.CloseIdle)
	for _, tt := range []struct{ header, want string }{
		{"Test-Header: 42\r\nOther: x\r\n", "42|x"},
		{"", "|"},
		{"Test-Header: 7\r\n", "7|"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), clientTestTimeout)
		err := c.Post(ctx, []byte(tt.header), []byte(`{}`), func(int, []byte) error { return nil })
		cancel()
		if err != nil {
			t.Fatalf("Post(header %q) = %v; want nil", tt.header, err)
		}
		if got := <-seen; got != tt.want {
			t.Errorf("Post(header %q): server saw %q; want %q", tt.header, got, tt.want)
		}
	}
}
