package jsonfield

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/go-logfmt/logfmt"
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
		got, ok := DecodeStringField([]byte(tt.body), "s")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("DecodeStringField(%q) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.wantOK)
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
		got, ok := DecodeStringField(body, "s")
		if !ok {
			return
		}
		var want struct {
			S string `json:"s"`
		}
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if got != want.S {
			t.Fatalf("fast path decoded %q as %q, encoding/json as %q", body, got, want.S)
		}
	})
}

// jsonString is s as encoding/json writes it with HTML escaping off.
func jsonString(tb testing.TB, s string) string {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		tb.Fatalf("encoding/json: %v", err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// logfmtString is s as go-logfmt writes a quoted value.
func logfmtString(tb testing.TB, s string) string {
	tb.Helper()
	var buf bytes.Buffer
	if err := logfmt.NewEncoder(&buf).EncodeKeyval("k", s); err != nil {
		tb.Fatalf("go-logfmt: %v", err)
	}
	return string(bytes.TrimPrefix(buf.Bytes(), []byte("k=")))
}

var quoteCases = []string{
	"", "hello", `a"b\c`, "tab\tnl\ncr\r", "\b\f\x00\x1f\x7f", "é ü 日本",
	"\u2028\u2029", "\ufffd", "\xff", "a\xc3", "<&>", "\U0001F600",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range quoteCases {
		if got, want := string(AppendString(nil, s)), jsonString(t, s); got != want {
			t.Errorf("AppendString(%q) = %s; want %s (encoding/json)", s, got, want)
		}
	}
}

func TestAppendLogfmtStringMatchesGoLogfmt(t *testing.T) {
	for _, s := range quoteCases {
		want := logfmtString(t, s)
		if want == "" || want[0] != '"' {
			continue // go-logfmt writes it bare; callers quote only what it quotes
		}
		if got := string(AppendLogfmtString(nil, s)); got != want {
			t.Errorf("AppendLogfmtString(%q) = %s; want %s (go-logfmt)", s, got, want)
		}
	}
}

// FuzzAppendString holds both quoters to their references: AppendString to
// encoding/json, AppendLogfmtString to go-logfmt wherever go-logfmt quotes.
// The two directions are one: equal bytes.
func FuzzAppendString(f *testing.F) {
	for _, s := range quoteCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(AppendString(nil, s)), jsonString(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s; want %s (encoding/json)", s, got, want)
		}
		if want := logfmtString(t, s); want != "" && want[0] == '"' {
			if got := string(AppendLogfmtString(nil, s)); got != want {
				t.Fatalf("AppendLogfmtString(%q) = %s; want %s (go-logfmt)", s, got, want)
			}
		}
	})
}
