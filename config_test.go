package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"stringsvc/internal/tracing"
)

// TestParseConfigEnvironment: STRINGSVC_* fill in what the command line
// leaves out; the command line wins, also over a value that would be an
// error.
func TestParseConfigEnvironment(t *testing.T) {
	tests := []struct {
		name      string
		args      string
		env       map[string]string
		wantQPS   float64
		wantFmt   string
		wantError string // part of the message; "" for none
	}{
		{name: "env only", env: map[string]string{"STRINGSVC_PROXY_QPS": "20"}, wantQPS: 20, wantFmt: "logfmt"},
		{name: "flag over env", args: "-proxy.qps 30", env: map[string]string{"STRINGSVC_PROXY_QPS": "20"}, wantQPS: 30, wantFmt: "logfmt"},
		{name: "flag over bad env", args: "-proxy.qps 30", env: map[string]string{"STRINGSVC_PROXY_QPS": "abc"}, wantQPS: 30, wantFmt: "logfmt"},
		{name: "flag over invalid env", args: "-log.format json", env: map[string]string{"STRINGSVC_LOG_FORMAT": "xml"}, wantQPS: 10000, wantFmt: "json"},
		{name: "bad env alone", env: map[string]string{"STRINGSVC_PROXY_QPS": "abc"}, wantError: "STRINGSVC_PROXY_QPS"},
		{name: "invalid env alone", env: map[string]string{"STRINGSVC_LOG_FORMAT": "xml"}, wantError: "-log.format"},
		{
			name:      "two bad: the first by name",
			env:       map[string]string{"STRINGSVC_PROXY_QPS": "abc", "STRINGSVC_PROXY_BURST": "x"},
			wantError: "STRINGSVC_PROXY_BURST", // by name, proxy.burst comes first
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(strings.Fields(tt.args), func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantError != "" {
				if !errors.As(err, &usageError{}) || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("parseConfig(%q, env %v) = %v; want a usageError mentioning %s", tt.args, tt.env, err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig(%q, env %v) = %v; want nil", tt.args, tt.env, err)
			}
			if cfg.QPS != tt.wantQPS || cfg.logFormat != tt.wantFmt {
				t.Errorf("parseConfig(%q, env %v): -proxy.qps %v, -log.format %q; want %v, %q",
					tt.args, tt.env, cfg.QPS, cfg.logFormat, tt.wantQPS, tt.wantFmt)
			}
		})
	}
}

func TestParseConfigDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		args    string // split at spaces
		wantErr string // "" for none
	}{
		{"register, advertise from listen", "-listen 127.0.0.1:0 -registry etcd://127.0.0.1:2379", ""},
		{"register, several endpoints", "-listen 10.0.0.1:8081 -registry etcd://h1:2379,h2:2379", ""},
		{"register, explicit advertise", "-listen :8081 -registry etcd://h:2379 -advertise 10.0.0.1:8081", ""},
		{"proxy etcd", "-proxy etcd://h1:2379,h2:2379", ""},
		{"proxy dns", "-proxy dns+srv://_http._tcp.stringsvc.default.svc.cluster.local -dns.server 127.0.0.1:5353", ""},
		{"dns server without port", "-proxy dns+srv://_http._tcp.x -dns.server 10.0.0.10", ""},
		{"register in consul", "-listen 127.0.0.1:1 -registry consul://h:8500 -registry.tags a,b", ""},
		{"register in zookeeper", "-listen 127.0.0.1:1 -registry zk://h1:2181,h2:2181", ""},
		{"proxy consul with tag", "-proxy consul://h:8500 -proxy.tag blue", ""},
		{"proxy zookeeper", "-proxy zk://h:2181", ""},
		{"proxy grpc list", "-proxy grpc://a:1,b:2", ""},
		{"proxy grpc without port", "-proxy grpc://a", "-proxy"},
		{"registry transport grpc without grpc", "-listen 127.0.0.1:1 -registry zk://h:2181 -registry.transport grpc", "needs -grpc.listen"},
		{"registry transport grpc", "-listen 127.0.0.1:1 -grpc.listen 127.0.0.1:2 -registry zk://h:2181 -registry.transport grpc", ""},
		{"registry transport grpc needs advertise", "-listen 127.0.0.1:1 -grpc.listen :2 -registry zk://h:2181 -registry.transport grpc", "-grpc.advertise is required"},
		{"registry transport unknown", "-registry.transport udp", "-registry.transport"},
		{"grpc max streams zero", "-grpc.max-streams 0", "-grpc.max-streams"},
		{"grpc keepalive min-time over the proxies' ping", "-grpc.keepalive.min-time 1m", "-grpc.keepalive.min-time"},
		{"registry unknown", "-listen 127.0.0.1:1 -registry eureka://h:8761", "-registry"},
		{"two consul agents", "-listen 127.0.0.1:1 -registry consul://h1:8500,h2:8500", "one Consul agent"},
		{"consul without port", "-listen 127.0.0.1:1 -registry consul://h", "-registry"},
		{"zk without port", "-proxy zk://h", "-proxy"},
		{"deregister-after under a minute", "-registry.deregister-after 30s", "-registry.deregister-after"},
		{"negative grace", "-registry.empty-grace -1s", "-registry.empty-grace"},
		{"zero check interval", "-registry.check-interval 0s", "-registry.check-interval"},
		{"proxy registering itself in zookeeper", "-listen 127.0.0.1:1 -registry zk://h:2181 -proxy zk://h:2181", "register itself"},
		{"registry without endpoint", "-listen 127.0.0.1:1 -registry etcd://", "-registry"},
		{"registry endpoint without port", "-listen 127.0.0.1:1 -registry etcd://h1:2379,h2", "-registry"},
		{"advertise needed", "-listen :8081 -registry etcd://h:2379", "-advertise is required"},
		{"advertise needed, 0.0.0.0", "-listen 0.0.0.0:8081 -registry etcd://h:2379", "-advertise is required"},
		{"bad advertise", "-listen :8081 -registry etcd://h:2379 -advertise nohost", "-advertise"},
		{"proxy registering itself", "-listen 127.0.0.1:1 -registry etcd://h:2379 -proxy etcd://h:2379", "register itself"},
		{"proxy unknown scheme", "-proxy eureka://h:8761", "unknown scheme"},
		{"proxy etcd without endpoint", "-proxy etcd://", "-proxy"},
		{"proxy dns without name", "-proxy dns+srv://", "-proxy"},
		{"proxy dns with port", "-proxy dns+srv://_http._tcp.x:53", "-proxy"},
		{"ttl below a second", "-registry.ttl 500ms", "-registry.ttl"},
		{"service name with slash", "-service.name a/b", "-service.name"},
		{"bad dns server", "-dns.server a:b:c", "-dns.server"},
		{"zero refresh", "-dns.refresh 0s", "-dns.refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(strings.Fields(tt.args), func(string) string { return "" }, io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("parseConfig(%q) = %v; want nil", tt.args, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("parseConfig(%q) = %v; want an error containing %q", tt.args, err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("parseConfig(%q) = %q; want one line", tt.args, err)
			}
		})
	}
}

// TestParseConfigTracing checks that the -otel.* flags, their STRINGSVC_*
// fallbacks, -service.name and the environment reach tracing.ParseConfig,
// whose own tests cover how it resolves them.
func TestParseConfigTracing(t *testing.T) {
	t.Parallel()
	on := func(endpoint string) tracing.Config {
		return tracing.Config{Endpoint: endpoint, Protocol: "http/protobuf", SampleRatio: 1, ParentBased: true,
			ServiceName: "stringsvc"}
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want tracing.Config
	}{
		{name: "off by default"},
		{name: "flag without path", args: []string{"-otel.endpoint", "http://c:4318"}, want: on("http://c:4318/v1/traces")},
		{name: "flag with path", args: []string{"-otel.endpoint", "https://c/otlp/v1/traces"}, want: on("https://c/otlp/v1/traces")},
		{name: "STRINGSVC_ env", env: map[string]string{"STRINGSVC_OTEL_ENDPOINT": "http://c:4318/"},
			want: on("http://c:4318/v1/traces")},
		{name: "base endpoint gets the signal path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"},
			want: on("http://c:4318/base/v1/traces")},
		{name: "flag over environment", args: []string{"-otel.endpoint", "http://flag:1"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:1"}, want: on("http://flag:1/v1/traces")},
		{name: "flag despite exporter none", args: []string{"-otel.endpoint", "http://c:4318"},
			env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, want: on("http://c:4318/v1/traces")},
		{name: "protocol flag", args: []string{"-otel.endpoint", "http://c:4317", "-otel.protocol", "grpc"},
			want: tracing.Config{Endpoint: "http://c:4317", Protocol: "grpc", SampleRatio: 1, ParentBased: true, ServiceName: "stringsvc"}},
		{name: "service name from -service.name", args: []string{"-otel.endpoint", "http://c:1/v1/traces", "-service.name", "edge"},
			want: tracing.Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 1, ParentBased: true, ServiceName: "edge"}},
		{name: "ratio flag", args: []string{"-otel.endpoint", "http://c:1/v1/traces", "-otel.sample-ratio", "0.25"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			want: tracing.Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 0.25, ParentBased: true, ServiceName: "stringsvc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q, env %v) = %v", tt.args, tt.env, err)
			}
			if diff := cmp.Diff(tt.want, cfg.otel); diff != "" {
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
