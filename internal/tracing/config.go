package tracing

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Config says where spans go and how many. Its zero value traces nothing.
type Config struct {
	Endpoint    string  // OTLP URL spans are sent to, the HTTP path included; empty: no tracing
	Protocol    string  // "http/protobuf" or "grpc"
	SampleRatio float64 // share of the traces started here that are sampled, in [0, 1]
	ParentBased bool    // a request with a traceparent follows its caller's decision instead
	ServiceName string  // the resource's service.name
}

// Flags are the -otel.* flags as the command line (or its environment
// fallbacks) gave them. Their zero value leaves every setting to
// OpenTelemetry's environment.
type Flags struct {
	Endpoint    string      // -otel.endpoint; empty: not given
	Protocol    string      // -otel.protocol; empty: not given
	SampleRatio SampleRatio // -otel.sample-ratio
}

// SampleRatio is the -otel.sample-ratio flag: a number in [0, 1] and
// whether it was given at all, since its default comes from the
// environment. Its zero value was not given.
type SampleRatio struct {
	v     float64
	given bool
}

// Set parses s, for flag.FlagSet.Func.
func (r *SampleRatio) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v <= 1) {
		return errors.New("want a number from 0 to 1")
	}
	r.v, r.given = v, true
	return nil
}

// setting is a value of the tracing configuration and where it was found
// (a flag or an environment variable), so an error can name it.
type setting struct{ from, value string }

func (s setting) String() string {
	if strings.HasPrefix(s.from, "-") {
		return fmt.Sprintf("%s %q", s.from, s.value)
	}
	return fmt.Sprintf("%s=%q", s.from, s.value)
}

// firstSetting is the flag's value if it is not empty, else the first of
// the environment variables that is set.
func firstSetting(getenv func(string) string, flagName, flagValue string, env ...string) setting {
	if flagValue != "" {
		return setting{flagName, flagValue}
	}
	for _, name := range env {
		if v := getenv(name); v != "" {
			return setting{name, v}
		}
	}
	return setting{}
}

// ParseConfig resolves the tracing configuration: the -otel.* flags first,
// then OpenTelemetry's standard environment variables
// (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT and _PROTOCOL, OTEL_TRACES_SAMPLER
// and _ARG, OTEL_SERVICE_NAME, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none),
// so a deployment that sets them for every service needs no flag. The
// environment is checked only when it turns tracing on. serviceName is
// service.name unless OTEL_SERVICE_NAME says otherwise. An error names the
// flag or variable at fault.
func ParseConfig(flags Flags, serviceName string, getenv func(string) string) (Config, error) {
	ep := firstSetting(getenv, "-otel.endpoint", flags.Endpoint,
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if ep.value == "" {
		return Config{}, nil
	}
	if ep.from != "-otel.endpoint" {
		// The environment's endpoint may be meant for other programs, which
		// these two turn off; a flag is meant for this one.
		if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
			return Config{}, nil
		}
		switch exporter := getenv("OTEL_TRACES_EXPORTER"); exporter {
		case "none":
			return Config{}, nil
		case "", "otlp":
		default:
			return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp or none", exporter)
		}
	}
	cfg := Config{Protocol: "http/protobuf", ServiceName: serviceName}
	if p := firstSetting(getenv, "-otel.protocol", flags.Protocol,
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p.value != "" {
		if p.value != "http/protobuf" && p.value != "grpc" {
			return Config{}, fmt.Errorf("%v: want http/protobuf or grpc", p)
		}
		cfg.Protocol = p.value
	}
	var err error
	if cfg.Endpoint, err = otlpTracesURL(ep, cfg.Protocol); err != nil {
		return Config{}, err
	}
	if ratio := flags.SampleRatio; ratio.given {
		cfg.SampleRatio, cfg.ParentBased = ratio.v, true
	} else if cfg.SampleRatio, cfg.ParentBased, err = samplerFromEnv(getenv); err != nil {
		return Config{}, err
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		cfg.ServiceName = name
	}
	return cfg, nil
}

// otlpTracesURL checks an endpoint and returns the URL the exporter posts
// to. OTEL_EXPORTER_OTLP_ENDPOINT is a base URL that gets /v1/traces after
// its path, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken as it is (the
// specification's rules), and -otel.endpoint gets /v1/traces only when it
// has no path, so that both http://host:4318 and
// http://host:4318/v1/traces work. gRPC ignores the path.
func otlpTracesURL(ep setting, protocol string) (string, error) {
	u, err := url.Parse(ep.value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%v: want an http:// or https:// URL such as http://127.0.0.1:4318", ep)
	}
	if protocol == "http/protobuf" {
		switch {
		case ep.from == "OTEL_EXPORTER_OTLP_ENDPOINT":
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		case ep.from == "-otel.endpoint" && (u.Path == "" || u.Path == "/"):
			u.Path = "/v1/traces"
		}
	}
	return u.String(), nil
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG:
// the ratio of new traces to sample and whether a caller's decision wins.
// Unset, it is the specification's default, parentbased_always_on.
func samplerFromEnv(getenv func(string) string) (ratio float64, parentBased bool, err error) {
	sampler := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	kind, parentBased := strings.CutPrefix(sampler, "parentbased_")
	switch {
	case sampler == "":
		return 1, true, nil
	case kind == "always_on":
		return 1, parentBased, nil
	case kind == "always_off":
		return 0, parentBased, nil
	case kind != "traceidratio":
		return 0, false, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio "+
			"or one of them after parentbased_", getenv("OTEL_TRACES_SAMPLER"))
	}
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	if arg == "" {
		return 1, parentBased, nil
	}
	var r SampleRatio
	if err := r.Set(arg); err != nil {
		return 0, false, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: %w", arg, err)
	}
	return r.v, parentBased, nil
}
