// Package jsonfield reads and writes the one JSON shape this service
// speaks, an object with one string member ({"s":"hello"}, {"v":"HELLO"}),
// without encoding/json's reflection and allocations, and quotes strings as
// encoding/json and go-logfmt do. It is held to encoding/json by fuzz
// tests. It knows nothing of the service's types or routes.
package jsonfield

import "unicode/utf8"

// DecodeStringField decodes body when it is exactly one JSON object with one
// string member named key, `{"s":"hello"}`, whose value has no escapes: the
// shape of every request and answer this service sends. It reports false
// for anything else (escapes, other members, another case of key, invalid
// UTF-8), which the caller hands to encoding/json. Doing so keeps
// encoding/json's meaning exactly while the common body skips its
// reflection and its allocation per decoded value. FuzzDecodeStringField
// checks the two agree.
func DecodeStringField(body []byte, key string) (string, bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i = skipSpace(body, i+1)
	if i+len(key)+2 > len(body) || body[i] != '"' || string(body[i+1:i+1+len(key)]) != key || body[i+1+len(key)] != '"' {
		return "", false
	}
	i = skipSpace(body, i+len(key)+2)
	if i >= len(body) || body[i] != ':' {
		return "", false
	}
	i = skipSpace(body, i+1)
	if i >= len(body) || body[i] != '"' {
		return "", false
	}
	start := i + 1
	end := start
	ascii := true
	for ; end < len(body); end++ {
		c := body[end]
		if c == '"' {
			break
		}
		if c == '\\' || c < 0x20 {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if end >= len(body) {
		return "", false
	}
	value := body[start:end]
	if !ascii && !utf8.Valid(value) {
		return "", false
	}
	i = skipSpace(body, end+1)
	if i >= len(body) || body[i] != '}' {
		return "", false
	}
	if skipSpace(body, i+1) != len(body) {
		return "", false
	}
	return string(value), true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// AppendString appends s as a JSON string exactly as encoding/json writes
// it with HTML escaping off (json.Encoder.SetEscapeHTML(false)): '"', '\\'
// and control characters escaped (\b, \f, \n, \r, \t by name, the rest as
// \u00XX), U+2028 and U+2029 escaped, invalid UTF-8 written as \ufffd.
// FuzzAppendString holds it to encoding/json.
func AppendString(dst []byte, s string) []byte {
	return appendQuoted(dst, s, false)
}

// AppendLogfmtString appends s quoted as go-logfmt quotes a value: JSON
// string syntax, but only \n, \r and \t escaped by name (\b and \f become
// \u0008 and \u000c), U+2028 and U+2029 left as they are, and U+FFFD
// written as \ufffd whether s held it or invalid UTF-8.
func AppendLogfmtString(dst []byte, s string) []byte {
	return appendQuoted(dst, s, true)
}

// appendQuoted appends s quoted and escaped as a JSON string, in
// encoding/json's dialect or, with logfmt, in go-logfmt's.
func appendQuoted(dst []byte, s string, logfmt bool) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case c == '"', c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b' && !logfmt:
				dst = append(dst, '\\', 'b')
			case c == '\f' && !logfmt:
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && (size == 1 || logfmt):
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case (r == '\u2028' || r == '\u2029') && !logfmt:
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
