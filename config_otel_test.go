package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfigTracing(t *testing.T) {
	t.Parallel()
	on := func(endpoint string) otelConfig {
		return otelConfig{endpoint: endpoint, protocol: "http/protobuf", sampleRatio: 1, parentBased: true,
			serviceName: "stringsvc"}
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want otelConfig
	}{
		{name: "off by default"},
		{name: "flag without path", args: []string{"-otel.endpoint", "http://c:4318"}, want: on("http://c:4318/v1/traces")},
		{name: "flag with path", args: []string{"-otel.endpoint", "https://c/otlp/v1/traces"}, want: on("https://c/otlp/v1/traces")},
		{name: "STRINGSVC_ env", env: map[string]string{"STRINGSVC_OTEL_ENDPOINT": "http://c:4318/"},
			want: on("http://c:4318/v1/traces")},
		{name: "base endpoint gets the signal path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"},
			want: on("http://c:4318/base/v1/traces")},
		{name: "traces endpoint as it is", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, want: on("http://c:4318/x")},
		{name: "flag over environment", args: []string{"-otel.endpoint", "http://flag:1"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:1"}, want: on("http://flag:1/v1/traces")},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "flag despite exporter none", args: []string{"-otel.endpoint", "http://c:4318"},
			env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, want: on("http://c:4318/v1/traces")},
		{name: "service name", args: []string{"-otel.endpoint", "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_SERVICE_NAME": "edge"},
			want: otelConfig{endpoint: "http://c:1/v1/traces", protocol: "http/protobuf", sampleRatio: 1, parentBased: true, serviceName: "edge"}},
		{name: "service name from -service.name", args: []string{"-otel.endpoint", "http://c:1/v1/traces", "-service.name", "edge"},
			want: otelConfig{endpoint: "http://c:1/v1/traces", protocol: "http/protobuf", sampleRatio: 1, parentBased: true, serviceName: "edge"}},
		{name: "grpc keeps the URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: otelConfig{endpoint: "http://c:4317", protocol: "grpc", sampleRatio: 1, parentBased: true, serviceName: "stringsvc"}},
		{name: "ratio flag", args: []string{"-otel.endpoint", "http://c:1/v1/traces", "-otel.sample-ratio", "0.25"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			want: otelConfig{endpoint: "http://c:1/v1/traces", protocol: "http/protobuf", sampleRatio: 0.25, parentBased: true, serviceName: "stringsvc"}},
		{name: "sampler from env", args: []string{"-otel.endpoint", "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
			want: otelConfig{endpoint: "http://c:1/v1/traces", protocol: "http/protobuf", sampleRatio: 0.5, serviceName: "stringsvc"}},
		{name: "parent-based sampler from env", args: []string{"-otel.endpoint", "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
			want: otelConfig{endpoint: "http://c:1/v1/traces", protocol: "http/protobuf", sampleRatio: 0, parentBased: true, serviceName: "stringsvc"}},
		{name: "bad sampler ignored with tracing off", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q, env %v) = %v", tt.args, tt.env, err)
			}
			if diff := cmp.Diff(tt.want, cfg.otel, cmp.AllowUnexported(otelConfig{})); diff != "" {
				t.Errorf("parseConfig(%q, env %v).otel (-want +got):\n%s", tt.args, tt.env, diff)
			}
		})
	}
}

func TestRunTracingUsageErrors(t *testing.T) {
	t.Parallel()
	endpoint := []string{"-otel.endpoint", "http://127.0.0.1:4318"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantMsg string
	}{
		{name: "ratio above 1", args: []string{"-otel.sample-ratio", "1.5"}, wantMsg: "-otel.sample-ratio"},
		{name: "ratio not a number", args: []string{"-otel.sample-ratio", "half"}, wantMsg: "-otel.sample-ratio"},
		{name: "ratio env", env: map[string]string{"STRINGSVC_OTEL_SAMPLE_RATIO": "-1"}, wantMsg: "STRINGSVC_OTEL_SAMPLE_RATIO"},
		{name: "endpoint without scheme", args: []string{"-otel.endpoint", "127.0.0.1:4318"}, wantMsg: "-otel.endpoint"},
		{name: "endpoint other scheme", args: []string{"-otel.endpoint", "ftp://h:1"}, wantMsg: "-otel.endpoint"},
		{name: "endpoint env not a URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "::"},
			wantMsg: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "protocol", args: append([]string{"-otel.protocol", "http/json"}, endpoint...), wantMsg: "-otel.protocol"},
		{name: "protocol env", args: endpoint, env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"},
			wantMsg: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{name: "sampler env", args: endpoint, env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
			wantMsg: "OTEL_TRACES_SAMPLER"},
		{name: "sampler arg env", args: endpoint, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "2"}, wantMsg: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "exporter env", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1",
			"OTEL_TRACES_EXPORTER": "zipkin"}, wantMsg: "OTEL_TRACES_EXPORTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			args := append([]string{"-listen", "127.0.0.1:0"}, tt.args...)
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if !errors.As(err, &usageError{}) {
				t.Fatalf("run(%q, env %v) = %v; want a usageError", args, tt.env, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("run(%q, env %v) = %q; want one line mentioning %q", args, tt.env, msg, tt.wantMsg)
			}
		})
	}
}
