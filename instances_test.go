package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitInstances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want []string
	}{
		{name: "host port", give: "127.0.0.1:8081", want: []string{"127.0.0.1:8081"}},
		{name: "url with path", give: "http://h:1/path", want: []string{"http://h:1/path"}},
		{name: "https without port", give: "https://h", want: []string{"https://h"}},
		{name: "ipv6", give: "[::1]:8080", want: []string{"[::1]:8080"}},
		{name: "list", give: "a:1,b:2,http://c:3", want: []string{"a:1", "b:2", "http://c:3"}},
		{name: "grpc list", give: "grpc://a:1,b:2", want: []string{"grpc://a:1", "grpc://b:2"}},
		{name: "grpc each", give: "grpc://a:1, grpc://b:2", want: []string{"grpc://a:1", "grpc://b:2"}},
		{name: "front scheme, own scheme", give: "grpc://a:1,http://b:2", want: []string{"grpc://a:1", "http://b:2"}},
		{name: "http list inherits", give: "http://a:1,b:2", want: []string{"http://a:1", "http://b:2"}},
		{name: "list with spaces", give: " a:1 , b:2\t,\nhttp://c:3/x ", want: []string{"a:1", "b:2", "http://c:3/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitInstances(tt.give)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitInstances(%q) = %q, %v; want %q, nil", tt.give, got, err, tt.want)
			}
		})
	}
}

func TestSplitInstancesRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
	}{
		{name: "empty", give: ""},
		{name: "blank", give: "  "},
		{name: "empty entry", give: "a:1,,b:2"},
		{name: "trailing comma", give: "a:1,"},
		{name: "no port", give: "host"},
		{name: "other scheme", give: "ftp://h:1"},
		{name: "port too large", give: "h:99999"},
		{name: "port zero", give: "h:0"},
		{name: "port not a number", give: "h:http"},
		{name: "no host", give: "http://:80"},
		{name: "duplicate", give: "a:1,b:2,a:1"},
		{name: "duplicate as URL", give: "a:1,http://a:1"},
		{name: "duplicate with default path", give: "http://a:1/,http://a:1/uppercase"},
		{name: "duplicate in other case", give: "http://H:1,http://h:1"},
		{name: "duplicate with default port", give: "http://a,http://a:80"},
		{name: "duplicate with default https port", give: "https://A:443/x,https://a/x"},
		{name: "grpc without port", give: "grpc://a"},
		{name: "grpc with path", give: "grpc://a:1/x"},
		{name: "inherited without port", give: "grpc://a:1,b"},
		{name: "grpc duplicate", give: "grpc://a:1,a:1"},
		{name: "query", give: "http://h:1/uppercase?x=1"},
		{name: "fragment", give: "http://h:1/#top"},
		{name: "user info", give: "http://u:p@h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitInstances(tt.give)
			if err == nil {
				t.Errorf("splitInstances(%q) = %q, nil; want an error", tt.give, got)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("splitInstances(%q) error = %q; want one line", tt.give, err)
			}
		})
	}
}

func TestParseInstance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "host port", give: "127.0.0.1:8081", want: "http://127.0.0.1:8081/uppercase"},
		{name: "ipv6", give: "[::1]:8081", want: "http://[::1]:8081/uppercase"},
		{name: "url without path", give: "http://h:1", want: "http://h:1/uppercase"},
		{name: "url with root path", give: "http://h:1/", want: "http://h:1/uppercase"},
		{name: "url with path", give: "http://h:1/path", want: "http://h:1/path"},
		{name: "https without port", give: "https://h", want: "https://h/uppercase"},
		{name: "grpc", give: "grpc://h:1", want: "grpc://h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInstance(tt.give)
			if err != nil || got.String() != tt.want {
				t.Errorf("parseInstance(%q) = %v, %v; want %s, nil", tt.give, got, err, tt.want)
			}
		})
	}
}

// FuzzSplitInstances checks that any -proxy value either fails or yields
// instances that parse, and that joining them again gives the same list.
func FuzzSplitInstances(f *testing.F) {
	for _, seed := range []string{
		"127.0.0.1:8081", "a:1, b:2 ,c:3", "http://h:1/path", "https://h", "[::1]:80", "",
		",", "a:1,,b:2", "host", "ftp://h:1", "h:99999", "a:1,a:1", "http://h:1/?q", "http://[::1", "\u00a0a:1\u00a0",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		instances, err := splitInstances(list)
		if err != nil {
			if instances != nil {
				t.Fatalf("splitInstances(%q) = %q, %v; want nil with the error", list, instances, err)
			}
			return
		}
		if len(instances) == 0 {
			t.Fatalf("splitInstances(%q) = %q, nil; want instances or an error", list, instances)
		}
		for _, instance := range instances {
			if _, err := parseInstance(instance); err != nil {
				t.Fatalf("splitInstances(%q) returned %q, which parseInstance rejects: %v", list, instance, err)
			}
		}
		joined := strings.Join(instances, ",")
		again, err := splitInstances(joined)
		if err != nil || !reflect.DeepEqual(again, instances) {
			t.Fatalf("splitInstances(%q) = %q, %v; want %q, nil", joined, again, err, instances)
		}
	})
}
