package main

import (
	"encoding/json"
	"testing"
)

func TestDecodeStringField(t *testing.T) {
	tests := []struct {
		body   string
		want   string
		wantOK bool
	}{
		{`{"s":"hello"}`, "hello", true},
		{` { "s" : "hello, world" } `, "hello, world", true},
		{"{\n\t\"s\":\"héllo\"\r\n}", "héllo", true},
		{`{"s":""}`, "", true},
		{`{"s":"a\"b"}`, "", false},     // escapes: encoding/json's job
		{`{"S":"hello"}`, "", false},    // other case of the key
		{`{"s":"a","x":1}`, "", false},  // another member
		{`{"s":1}`, "", false},          // not a string
		{`{"s":"a"} x`, "", false},      // trailing data
		{`{"s":"a"`, "", false},         // cut short
		{"{\"s\":\"\xff\"}", "", false}, // invalid UTF-8
		{"{\"s\":\"a\tb\"}", "", false}, // raw control character
		{`{"v":"HELLO"}`, "", false},    // the answer's key, not this one
		{`["s"]`, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := decodeStringField([]byte(tt.body), "s")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("decodeStringField(%q) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzDecodeStringField checks that the fast path never disagrees with
// encoding/json: whatever it accepts, json.Unmarshal accepts with the same
// value.
func FuzzDecodeStringField(f *testing.F) {
	for _, seed := range []string{`{"s":"hello"}`, ` {"s" : "x y"}`, `{"s":"a\u0041"}`, `{"s":"é"}`, `{"s":null}`, `{}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := decodeStringField(body, "s")
		if !ok {
			return
		}
		var want uppercaseRequest
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if got != want.S {
			t.Fatalf("fast path decoded %q as %q, encoding/json as %q", body, got, want.S)
		}
	})
}
