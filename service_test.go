package main

import (
	"context"
	"errors"
	"testing"
)

func TestUppercase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr error
	}{
		{name: "ascii", give: "hello", want: "HELLO"},
		{name: "mixed", give: "Hello, World 42", want: "HELLO, WORLD 42"},
		{name: "unicode", give: "héllo", want: "HÉLLO"},
		{name: "greek", give: "αβγ", want: "ΑΒΓ"},
		// strings.ToUpper maps rune by rune; ß has no single-rune upper case,
		// so it stays ß (not "SS", and not ẞ).
		{name: "sharp s", give: "straße", want: "STRAßE"},
		{name: "already upper", give: "HELLO", want: "HELLO"},
		{name: "empty", give: "", wantErr: ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stringService{}.Uppercase(context.Background(), tt.give)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Uppercase(%q) = %q, %v; want %q, %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give string
		want int
	}{
		{name: "ascii", give: "abc", want: 3},
		{name: "precomposed", give: "héllo", want: 5},
		{name: "combining accent", give: "he\u0301llo", want: 6},
		{name: "empty", give: "", want: 0},
		{name: "emoji", give: "👍", want: 1},
		{name: "emoji with skin tone", give: "👍🏽", want: 2},
		{name: "invalid utf-8 byte", give: "a\xffb", want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (stringService{}).Count(context.Background(), tt.give); got != tt.want {
				t.Errorf("Count(%q) = %d; want %d", tt.give, got, tt.want)
			}
		})
	}
}
