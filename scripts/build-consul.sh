#!/usr/bin/env bash
# Builds Consul v1.14.11 (the last MPL-2.0 line; never 1.15+) once into a
# cache directory, for the internal/sd/consul tests: there is no Debian
# package. Does nothing when the binary is there. Prints the binary's path.
# A cold build takes minutes and about 2 GB of memory.
set -euo pipefail

version=v1.14.11
cache=${CONSUL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stringsvc/consul-${version#v}}
bin=$cache/consul

if [[ ! -x $bin ]]; then
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	mkdir -p "$cache"
	cd "$scratch"
	go mod init consulbuild
	printf '//go:build tools\n\npackage consulbuild\n\nimport _ "github.com/hashicorp/consul"\n' >tools.go
	go get "github.com/hashicorp/consul@$version"
	go build -trimpath -o "$bin.tmp" github.com/hashicorp/consul
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
