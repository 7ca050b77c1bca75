package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/go-kit/log"
	"go.opentelemetry.io/otel/trace"

	"stringsvc/internal/deadline"
	"stringsvc/internal/jsonfield"
)

// uppercaseRequest is the body of /uppercase, as in go-kit's stringsvc3.
type uppercaseRequest struct {
	S string `json:"s"`
}

// uppercaseResponse is the body /uppercase answers with. Err carries a
// business error on the wire (stringsvc3's dialect); err carries it in process.
type uppercaseResponse struct {
	V   string `json:"v"`
	Err string `json:"err,omitempty"`
	err error
}

// Failed implements endpoint.Failer.
func (r uppercaseResponse) Failed() error { return r.err }

// countRequest is the body of /count.
type countRequest struct {
	S string `json:"s"`
}

// countResponse is the body /count answers with.
type countResponse struct {
	V int `json:"v"`
}

// errorResponse is the error body of every route but /uppercase.
type errorResponse struct {
	Err string `json:"err"`
}

func makeUppercaseEndpoint(svc StringService) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(uppercaseRequest)
		v, err := svc.Uppercase(ctx, req.S)
		return uppercaseResponse{V: v, err: err}, nil
	}
}

func makeCountEndpoint(svc StringService) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(countRequest)
		return countResponse{V: svc.Count(ctx, req.S)}, nil
	}
}

func decodeUppercaseRequest(_ context.Context, r *http.Request) (any, error) {
	var req uppercaseRequest
	if err := decodeJSON(r.Body, &req, &req.S); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeCountRequest(_ context.Context, r *http.Request) (any, error) {
	var req countRequest
	if err := decodeJSON(r.Body, &req, &req.S); err != nil {
		return nil, err
	}
	return req, nil
}

// byteBuffers recycles the bodies of upstream requests and of responses.
var byteBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// bodyBuffers recycles request bodies while they are decoded.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeJSON decodes exactly one JSON value from body into v. Anything the
// client got wrong becomes a badRequestError; a body over the limit set by
// limitBody stays an *http.MaxBytesError. Reading the body whole into a
// recycled buffer and unmarshalling it costs less than a json.Decoder, and
// json.Unmarshal rejects trailing data by itself. s is v's "s" member: the
// common body, `{"s":"…"}` without escapes, fills it directly
// (jsonfield.DecodeStringField).
func decodeJSON(body io.Reader, v any, s *string) error {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer bodyBuffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return badRequestError{err: err}
	}
	if buf.Len() == 0 {
		return badRequestError{err: io.EOF}
	}
	if value, ok := jsonfield.DecodeStringField(buf.Bytes(), "s"); ok {
		*s = value
		return nil
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return badRequestError{err: err}
	}
	return nil
}

// encodeResponse writes a response as JSON, or, when the response carries
// an error (endpoint.Failer), the error body and status for it. The two
// success bodies are written by hand: it is the hottest path of the
// service, and encoding/json's reflection and encoder cost several
// allocations per response.
func (ee errorEncoder) encodeResponse(ctx context.Context, w http.ResponseWriter, response any) error {
	if f, ok := response.(endpoint.Failer); ok && f.Failed() != nil {
		ee.encode(ctx, f.Failed(), w)
		return nil
	}
	buf := byteBuffers.Get().(*[]byte)
	defer byteBuffers.Put(buf)
	b := append((*buf)[:0], `{"v":`...)
	switch r := response.(type) {
	case uppercaseResponse:
		b = jsonfield.AppendString(b, r.V)
	case countResponse:
		b = strconv.AppendInt(b, int64(r.V), 10)
	default:
		return httptransport.EncodeJSONResponse(ctx, w, response)
	}
	b = append(b, "}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	*buf = b
	_, err := w.Write(b)
	return err
}

// jsonContentType is set as a slice so no request canonicalises or
// allocates it again. Handlers never modify it.
var jsonContentType = []string{"application/json; charset=utf-8"}

// errorEncoder writes errors as JSON with the status errorStatus chooses.
// For 5xx the client gets a short, safe message and the cause goes to
// errorLog, once per failed request, whether or not requests are logged:
// the client's message cannot carry it.
type errorEncoder struct {
	// withV adds "v":"" to the body, as stringsvc3's /uppercase errors have.
	withV    bool
	errorLog log.Logger
}

func (ee errorEncoder) encode(ctx context.Context, err error, w http.ResponseWriter) {
	status := errorStatus(err)
	msg := err.Error()
	if status >= 500 || status == statusClientClosedRequest {
		msg = statusMessage(status)
	}
	if status >= 500 && ee.errorLog != nil {
		ee.errorLog.Log(appendTraceIDs(ctx, []any{"msg", "request failed", "status", status, "err", err})...)
	}
	if status >= 500 {
		trace.SpanFromContext(ctx).RecordError(err) // the cause, which the client is not told
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	var body any = errorResponse{Err: msg}
	if ee.withV {
		body = uppercaseResponse{Err: msg}
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body) // the status is sent; a failed write has no one to tell
}

// newHTTPHandler returns the service's routes:
//
//	POST /uppercase  {"s":"hello"} → {"v":"HELLO"}        (GET with a body too, as stringsvc3's proxy sends)
//	                 a Request-Timeout-Ms header bounds the request's context; 0 is 504 at once
//	POST /count      {"s":"abc"}   → {"v":3}              (GET with a body too)
//	GET  /metrics    Prometheus text format
//	GET  /healthz    200 while the process runs
//	GET  /readyz     200 when ready to serve, 503 otherwise
//	anything else    404 {"err":"not found"}; a known path with another method: 405 with Allow
//
// The cause of each 5xx is logged to errorLog.
func newHTTPHandler(uppercase, count endpoint.Endpoint, ready func() bool, metrics http.Handler,
	maxBodyBytes int64, errorLog log.Logger) http.Handler {
	upperErrors := errorEncoder{withV: true, errorLog: errorLog}
	countErrors := errorEncoder{errorLog: errorLog}
	mux := http.NewServeMux()
	mux.Handle("/uppercase", allowMethods(boundByTimeoutHeader(limitBody(maxBodyBytes, httptransport.NewServer(
		uppercase, decodeUppercaseRequest, upperErrors.encodeResponse,
		httptransport.ServerErrorEncoder(upperErrors.encode),
	))), http.MethodPost, http.MethodGet))
	mux.Handle("/count", allowMethods(boundByTimeoutHeader(limitBody(maxBodyBytes, httptransport.NewServer(
		count, decodeCountRequest, countErrors.encodeResponse,
		httptransport.ServerErrorEncoder(countErrors.encode),
	))), http.MethodPost, http.MethodGet))
	mux.Handle("/metrics", allowMethods(metrics, http.MethodGet))
	mux.Handle("/healthz", allowMethods(http.HandlerFunc(handleHealthz), http.MethodGet))
	mux.Handle("/readyz", allowMethods(handleReadyz(ready), http.MethodGet))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		countErrors.encode(r.Context(), errNotFound, w)
	})
	return mux
}

// timeoutHeader carries, from a proxy to an instance, the time the proxy
// still waits for the answer, in whole milliseconds rounded up (so 0 means
// none is left): gRPC's grpc-timeout for HTTP, as Envoy sends
// x-envoy-expected-rq-timeout-ms.
const timeoutHeader = "Request-Timeout-Ms"

// appendTimeoutHeader appends the timeoutHeader line for d.
func appendTimeoutHeader(b []byte, d time.Duration) []byte {
	ms := max(int64((d+time.Millisecond-1)/time.Millisecond), 0)
	b = append(b, timeoutHeader+": "...)
	return append(strconv.AppendInt(b, ms, 10), "\r\n"...)
}

// errTimeoutHeader is a timeoutHeader that is not a whole number.
var errTimeoutHeader = errors.New(timeoutHeader + " header: want one whole number of milliseconds")

// errExpired is a request that arrived with no time left to serve it.
var errExpired = fmt.Errorf("request arrived with no time left (%s: 0): %w", timeoutHeader,
	context.DeadlineExceeded)

// boundByTimeoutHeader bounds each request's context by its timeoutHeader,
// so a caller's deadline reaches the service, and answers a request that
// arrived out of time 504 without running anything. Without the header the
// request is served as it is, at the cost of one header lookup.
func boundByTimeoutHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header[timeoutHeader]
		if len(v) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		ms, err := strconv.ParseInt(v[0], 10, 64)
		switch {
		case err != nil || ms < 0 || len(v) > 1:
			errorEncoder{}.encode(r.Context(), badRequestError{err: errTimeoutHeader}, w)
			return
		case ms == 0:
			errorEncoder{}.encode(r.Context(), errExpired, w)
			return
		}
		// A timer only once something waits on the context: the service
		// itself never does.
		d := time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
		ctx, release := deadline.WithDeadline(r.Context(), time.Now().Add(d))
		defer release()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// allowMethods answers 405 with an Allow header and a JSON body for any
// method not listed (HEAD is allowed wherever GET is).
func allowMethods(next http.Handler, methods ...string) http.Handler {
	allow := methods[0]
	for _, m := range methods[1:] {
		allow += ", " + m
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (r.Method == http.MethodHead && m == http.MethodGet) {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		errorEncoder{}.encode(r.Context(), errMethodNotAllowed, w)
	})
}

// limitBody caps the request body at max bytes; reading past it fails with
// *http.MaxBytesError, which errorStatus maps to 413.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}

// badRequestError is a request the client got wrong: malformed JSON, a field
// of the wrong type, trailing data.
type badRequestError struct{ err error }

func (e badRequestError) Error() string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(e.err, &typeErr) {
		return fmt.Sprintf("malformed request: field %q must be a %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	if errors.Is(e.err, io.EOF) {
		return "malformed request: empty body, want a JSON object"
	}
	return "malformed request: " + e.err.Error()
}

func (e badRequestError) Unwrap() error { return e.err }

// decodeUppercaseResponse sorts an instance's answer to /uppercase into a
// result, a business error or a failure.
func decodeUppercaseResponse(status int, body []byte) (any, error) {
	var resp uppercaseResponse
	var jsonErr error
	if v, ok := jsonfield.DecodeStringField(body, "v"); ok {
		resp.V = v
	} else {
		jsonErr = json.Unmarshal(body, &resp)
	}
	switch {
	case jsonErr == nil && resp.Err == ErrEmpty.Error() &&
		(status == http.StatusOK || status == http.StatusBadRequest):
		return uppercaseResponse{err: ErrEmpty}, nil
	case status >= 500 || status == http.StatusTooManyRequests:
		return nil, fmt.Errorf("upstream answered %d", status)
	case status != http.StatusOK:
		return uppercaseResponse{err: fmt.Errorf("%w: instance refused the request: %d %q",
			errUpstream, status, resp.Err)}, nil
	case jsonErr != nil:
		return nil, fmt.Errorf("decode upstream answer: %w", jsonErr)
	case resp.Err != "":
		return uppercaseResponse{err: fmt.Errorf("%w: instance answered %q", errUpstream, resp.Err)}, nil
	}
	return uppercaseResponse{V: resp.V}, nil
}
