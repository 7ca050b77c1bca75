package h1

import (
	"net/http"
	"strings"
)

// The lexical rules of RFC 9110 that request parsing applies: tokens,
// values, hosts, and how protocol tokens compare. All ASCII: see
// asciiEqualFold.

// validTarget reports whether s may be a request target: no space or
// control character.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// containsToken reports whether token, in ASCII case, is one of the words
// of v separated by commas, spaces or tabs, as net/http's hasToken finds
// it.
func containsToken(v, token string) bool {
	for {
		i := strings.IndexAny(v, ", \t")
		if i < 0 {
			return asciiEqualFold(v, token)
		}
		if asciiEqualFold(v[:i], token) {
			return true
		}
		v = v[i+1:]
	}
}

// asciiEqualFold reports whether s and t are equal under ASCII case
// folding, as protocol tokens compare (RFC 9110 5.1) and as net/http
// compares them. strings.EqualFold folds Unicode: it would take
// "chun\u212Aed" (KELVIN SIGN) for "chunked" and "clo\u017Fe" (LONG S) for
// "close", which net/http refuses or ignores (issue 9).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII(s[i]) != lowerASCII(t[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// trimOWS trims optional whitespace, spaces and tabs (RFC 9110 5.6.3), from
// both ends of s. strings.TrimSpace would also trim Unicode spaces such as
// U+0085 and U+00A0.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// isToken reports whether s is an RFC 9110 token (method, header name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return s != ""
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// validHost reports whether s may be a Host header: the bytes net/http
// (httpguts.ValidHostHeader) allows in a host, an IPv6 literal and a port.
func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alnum && strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) < 0 {
			return false
		}
	}
	return true
}

// validValue reports whether s may be a header value: no control
// characters but tab.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// canonicalKey returns name in canonical form ("content-type" →
// "Content-Type"), without allocating when it already is.
func canonicalKey(name string) string {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (upper && 'a' <= c && c <= 'z') || (!upper && 'A' <= c && c <= 'Z') {
			return http.CanonicalHeaderKey(name)
		}
		upper = c == '-'
	}
	return name
}
