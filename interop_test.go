package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	httptransport "github.com/go-kit/kit/transport/http"
)

// The wire types of go-kit's stringsvc3 (examples/stringsvc3/transport.go).
type sv3UppercaseRequest struct {
	S string `json:"s"`
}

type sv3UppercaseResponse struct {
	V   string `json:"v"`
	Err string `json:"err,omitempty"` // errors don't JSON-marshal, so we use a string
}

// newReferenceBackend serves /uppercase the way stringsvc3 does: any
// method, a JSON body with or without Content-Type, and the business error
// as 200 {"v":"","err":"empty string"}. It returns its instance and a count
// of the requests it got.
func newReferenceBackend(tb testing.TB) (string, *atomic.Int64) {
	tb.Helper()
	var hits atomic.Int64
	ts := startServer(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var req sv3UppercaseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError) // go-kit's default error encoder
			return
		}
		resp := sv3UppercaseResponse{V: strings.ToUpper(req.S)}
		if req.S == "" {
			resp = sv3UppercaseResponse{V: "", Err: "empty string"}
		}
		if err := json.NewEncoder(w).Encode(resp); err != nil {
			tb.Errorf("reference backend: encode: %v", err)
		}
	}))
	return strings.TrimPrefix(ts.URL, "http://"), &hits
}

func TestProxyToReferenceBackends(t *testing.T) {
	t.Parallel()
	instance1, hits1 := newReferenceBackend(t)
	instance2, hits2 := newReferenceBackend(t)
	cfg := testProxyConfig()
	cfg.BreakerFailures = 1 // one counted failure would open a breaker
	p := newTestProxy(t, cfg, instance1, instance2)
	hits := func() int64 { return hits1.Load() + hits2.Load() }

	for _, s := range []string{"hello", "héllo", "a b"} {
		p.mustUppercase(t, s)
	}
	const n = 6
	for i := range n {
		before := hits()
		resp, body := p.uppercase(t, "")
		if want := `{"v":"","err":"empty string"}`; resp.StatusCode != http.StatusBadRequest || body != want {
			t.Errorf("POST /uppercase \"\" via proxy to stringsvc3 = %d %s; want 400 %s", resp.StatusCode, body, want)
		}
		if got := hits() - before; got != 1 {
			t.Errorf("request %d: reference backends got %d requests; want 1", i, got)
		}
	}
	for _, instance := range []string{instance1, instance2} {
		if got := p.breakerState(t, instance); got != 0 {
			t.Errorf("breaker state of %s after business errors = %v; want 0 (closed)", instance, got)
		}
	}
	if got := metricValue(t, p.reg, "stringsvc_upstream_retries_total"); got != 0 {
		t.Errorf("stringsvc_upstream_retries_total = %v; want 0", got)
	}
	p.mustUppercase(t, "still closed")
}

// TestReferenceProxyToOurBackend sends what stringsvc3's proxy sends
// (examples/stringsvc3/proxying.go: a go-kit client, GET, the body written
// by encodeRequest with no Content-Type) to our handler stack.
func TestReferenceProxyToOurBackend(t *testing.T) {
	t.Parallel()
	h := newServiceHandler(func() bool { return true }, 1<<20)
	type seen struct{ method, contentType string }
	var (
		mu       sync.Mutex
		requests []seen
	)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, seen{r.Method, r.Header.Get("Content-Type")})
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	u, err := url.Parse(ts.URL + "/uppercase")
	if err != nil {
		t.Fatalf("parse %s: %v", ts.URL, err)
	}
	// stringsvc3's makeUppercaseProxy, encodeRequest and decodeUppercaseResponse.
	encodeRequest := func(_ context.Context, r *http.Request, request any) error {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(request); err != nil {
			return err
		}
		r.Body = io.NopCloser(&buf)
		return nil
	}
	decodeUppercaseResponse := func(_ context.Context, r *http.Response) (any, error) {
		var response sv3UppercaseResponse
		if err := json.NewDecoder(r.Body).Decode(&response); err != nil {
			return nil, err
		}
		return response, nil
	}
	uppercase := httptransport.NewClient("GET", u, encodeRequest, decodeUppercaseResponse).Endpoint()

	tests := []struct {
		name string
		give string
		want sv3UppercaseResponse
	}{
		{name: "ascii", give: "hello", want: sv3UppercaseResponse{V: "HELLO"}},
		{name: "unicode", give: "héllo", want: sv3UppercaseResponse{V: "HÉLLO"}},
		{name: "empty", give: "", want: sv3UppercaseResponse{Err: "empty string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := uppercase(context.Background(), sv3UppercaseRequest{S: tt.give})
			if err != nil || got != tt.want {
				t.Errorf("stringsvc3 proxy Uppercase(%q) = %+v, %v; want %+v, nil", tt.give, got, err, tt.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		if r.method != http.MethodGet || r.contentType != "" {
			t.Errorf("backend saw %s with Content-Type %q; want GET without Content-Type, as stringsvc3 sends", r.method, r.contentType)
		}
	}
	if len(requests) != len(tests) {
		t.Errorf("backend saw %d requests; want %d", len(requests), len(tests))
	}
}
