package tracing

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ratio(tb testing.TB, s string) SampleRatio {
	tb.Helper()
	var r SampleRatio
	if err := r.Set(s); err != nil {
		tb.Fatalf("SampleRatio.Set(%q) = %v", s, err)
	}
	return r
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	on := func(endpoint string) Config {
		return Config{Endpoint: endpoint, Protocol: "http/protobuf", SampleRatio: 1, ParentBased: true,
			ServiceName: "stringsvc"}
	}
	tests := []struct {
		name        string
		flags       Flags
		serviceName string // "": stringsvc
		env         map[string]string
		want        Config
	}{
		{name: "off by default"},
		{name: "flag without path", flags: Flags{Endpoint: "http://c:4318"}, want: on("http://c:4318/v1/traces")},
		{name: "flag with path", flags: Flags{Endpoint: "https://c/otlp/v1/traces"}, want: on("https://c/otlp/v1/traces")},
		{name: "flag with a slash only", flags: Flags{Endpoint: "http://c:4318/"}, want: on("http://c:4318/v1/traces")},
		{name: "base endpoint gets the signal path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"},
			want: on("http://c:4318/base/v1/traces")},
		{name: "traces endpoint as it is", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, want: on("http://c:4318/x")},
		{name: "flag over environment", flags: Flags{Endpoint: "http://flag:1"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:1"}, want: on("http://flag:1/v1/traces")},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "flag despite exporter none", flags: Flags{Endpoint: "http://c:4318"},
			env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, want: on("http://c:4318/v1/traces")},
		{name: "service name", flags: Flags{Endpoint: "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_SERVICE_NAME": "edge"},
			want: Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 1, ParentBased: true, ServiceName: "edge"}},
		{name: "service name from the caller", flags: Flags{Endpoint: "http://c:1/v1/traces"}, serviceName: "edge",
			want: Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 1, ParentBased: true, ServiceName: "edge"}},
		{name: "grpc keeps the URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: Config{Endpoint: "http://c:4317", Protocol: "grpc", SampleRatio: 1, ParentBased: true, ServiceName: "stringsvc"}},
		{name: "protocol flag over environment", flags: Flags{Endpoint: "http://c:4317", Protocol: "grpc"},
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			want: Config{Endpoint: "http://c:4317", Protocol: "grpc", SampleRatio: 1, ParentBased: true, ServiceName: "stringsvc"}},
		{name: "ratio flag", flags: Flags{Endpoint: "http://c:1/v1/traces", SampleRatio: ratio(t, "0.25")},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			want: Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 0.25, ParentBased: true, ServiceName: "stringsvc"}},
		{name: "sampler from env", flags: Flags{Endpoint: "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
			want: Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 0.5, ServiceName: "stringsvc"}},
		{name: "parent-based sampler from env", flags: Flags{Endpoint: "http://c:1/v1/traces"},
			env:  map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
			want: Config{Endpoint: "http://c:1/v1/traces", Protocol: "http/protobuf", SampleRatio: 0, ParentBased: true, ServiceName: "stringsvc"}},
		{name: "bad sampler ignored with tracing off", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serviceName := tt.serviceName
			if serviceName == "" {
				serviceName = "stringsvc"
			}
			cfg, err := ParseConfig(tt.flags, serviceName, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatalf("ParseConfig(%+v, %q, env %v) = %v", tt.flags, serviceName, tt.env, err)
			}
			if diff := cmp.Diff(tt.want, cfg); diff != "" {
				t.Errorf("ParseConfig(%+v, %q, env %v) (-want +got):\n%s", tt.flags, serviceName, tt.env, diff)
			}
		})
	}
}

// TestParseConfigErrors checks that a bad setting is an error of one line
// naming the flag or variable it came from.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	endpoint := Flags{Endpoint: "http://127.0.0.1:4318"}
	tests := []struct {
		name    string
		flags   Flags
		env     map[string]string
		wantMsg string
	}{
		{name: "endpoint without scheme", flags: Flags{Endpoint: "127.0.0.1:4318"}, wantMsg: `-otel.endpoint "127.0.0.1:4318"`},
		{name: "endpoint other scheme", flags: Flags{Endpoint: "ftp://h:1"}, wantMsg: "-otel.endpoint"},
		{name: "endpoint with a query", flags: Flags{Endpoint: "http://h:1/?a=b"}, wantMsg: "-otel.endpoint"},
		{name: "endpoint env not a URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "::"},
			wantMsg: `OTEL_EXPORTER_OTLP_ENDPOINT="::"`},
		{name: "protocol", flags: Flags{Endpoint: endpoint.Endpoint, Protocol: "http/json"}, wantMsg: "-otel.protocol"},
		{name: "protocol env", flags: endpoint, env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"},
			wantMsg: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{name: "sampler env", flags: endpoint, env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
			wantMsg: "OTEL_TRACES_SAMPLER"},
		{name: "sampler arg env", flags: endpoint, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "2"}, wantMsg: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "exporter env", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1",
			"OTEL_TRACES_EXPORTER": "zipkin"}, wantMsg: "OTEL_TRACES_EXPORTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.flags, "stringsvc", func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatalf("ParseConfig(%+v, env %v) = nil; want an error", tt.flags, tt.env)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("ParseConfig(%+v, env %v) = %q; want one line mentioning %q", tt.flags, tt.env, msg, tt.wantMsg)
			}
		})
	}
}

func TestSampleRatioSet(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1.5", "-1", "half", "NaN", ""} {
		var r SampleRatio
		if err := r.Set(s); err == nil || r.given {
			t.Errorf("SampleRatio.Set(%q) = %v, given %v; want an error, not given", s, err, r.given)
		}
	}
	for _, s := range []string{"0", "0.25", "1"} {
		if r := ratio(t, s); !r.given {
			t.Errorf("SampleRatio.Set(%q): not given; want given", s)
		}
	}
}
