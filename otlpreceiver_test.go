package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver on 127.0.0.1: it takes what
// an OpenTelemetry collector takes at POST /v1/traces (protobuf, gzipped
// or not), decodes it with OTLP's own Go types, and keeps the spans. Or,
// from newOTLPGRPCReceiver, the same over OTLP/gRPC.
type otlpReceiver struct {
	URL string // base URL, as -otel.endpoint takes it

	mu    sync.Mutex
	spans []otlpSpan
}

// otlpSpan is a received span and the service.name of its resource.
type otlpSpan struct {
	service string
	*tracepb.Span
}

func newOTLPReceiver(tb testing.TB) *otlpReceiver {
	tb.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *otlpReceiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, not "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var export coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &export); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.keep(&export)
	answer, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(answer) // the exporter retries what it does not get
}

// keep adds the spans of export.
func (r *otlpReceiver) keep(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		service := attrValue(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, otlpSpan{service: service, Span: s})
			}
		}
	}
}

// newOTLPGRPCReceiver is newOTLPReceiver for OTLP/gRPC: its URL is
// http://127.0.0.1:port, as -otel.endpoint takes it with -otel.protocol grpc.
func newOTLPGRPCReceiver(tb testing.TB) *otlpReceiver {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &otlpReceiver{URL: "http://" + ln.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, otlpTraceService{r: r})
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln) // returns when stopped
	}()
	tb.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return r
}

// otlpTraceService is OTLP/gRPC's trace service, keeping what it is sent.
type otlpTraceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *otlpReceiver
}

func (s otlpTraceService) Export(_ context.Context, export *coltracepb.ExportTraceServiceRequest) (
	*coltracepb.ExportTraceServiceResponse, error) {
	s.r.keep(export)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// trace returns the received spans of the trace traceID (hex), in the
// order they arrived.
func (r *otlpReceiver) trace(traceID string) []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var spans []otlpSpan
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			spans = append(spans, s)
		}
	}
	return spans
}

// all returns every span received so far.
func (r *otlpReceiver) all() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

func (s otlpSpan) spanID() string   { return hex.EncodeToString(s.SpanId) }
func (s otlpSpan) parentID() string { return hex.EncodeToString(s.ParentSpanId) }

// attrs renders the span's attributes as text: strings as they are,
// numbers and booleans as Go formats them.
func (s otlpSpan) attrs() map[string]string {
	m := make(map[string]string, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[kv.Key] = anyValueText(kv.Value)
	}
	return m
}

func (s otlpSpan) String() string {
	return fmt.Sprintf("%s span %q (kind %v, span %s, parent %s, status %v %q) %v",
		s.service, s.Name, s.Kind, s.spanID(), s.parentID(), s.GetStatus().GetCode(),
		s.GetStatus().GetMessage(), s.attrs())
}

func attrValue(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return anyValueText(kv.Value)
		}
	}
	return ""
}

func anyValueText(v *commonpb.AnyValue) string {
	switch v := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return v.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(v.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(v.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
