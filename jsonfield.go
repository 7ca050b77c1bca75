package main

import "unicode/utf8"

// decodeStringField decodes body when it is exactly one JSON object with one
// string member named key, `{"s":"hello"}`, whose value has no escapes: the
// shape of every request and answer this service sends. It reports false
// for anything else (escapes, other members, another case of key, invalid
// UTF-8), which the caller hands to encoding/json. Doing so keeps
// encoding/json's meaning exactly while the common body skips its
// reflection and allocations (BENCHMARKS.md). FuzzDecodeStringField checks
// the two agree.
func decodeStringField(body []byte, key string) (string, bool) {
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

// appendJSONString appends s as a JSON string, as encoding/json writes it
// (minus its optional HTML escaping): invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	return appendQuoted(dst, s, false)
}

// appendQuoted appends s quoted and escaped as a JSON string: '"', '\\' and
// control characters escaped, invalid UTF-8 written as \ufffd. With
// escapeReplacement, a U+FFFD already in s is written as \ufffd too, which
// is how go-logfmt quotes (appendLogfmtString).
func appendQuoted(dst []byte, s string, escapeReplacement bool) []byte {
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
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && (size == 1 || escapeReplacement) {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
