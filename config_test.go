package main

import (
	"errors"
	"io"
	"strings"
	"testing"
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
