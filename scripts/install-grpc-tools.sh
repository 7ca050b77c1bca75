#!/usr/bin/env bash
# Installs the pinned gRPC tools with go install, into $(go env GOPATH)/bin
# (or GOBIN): the two protoc plugins `go generate ./pb` runs, and the grpcurl
# and grpc-health-probe binaries the tests drive. Names given as arguments
# install only those tools; none installs all four.
#
# protoc-gen-go matches google.golang.org/protobuf in go.mod; the code
# protoc-gen-go-grpc v1.6 generates needs grpc >= 1.64 (go.mod has 1.85).
# protoc itself is Debian's: apt-get install protobuf-compiler.
set -euo pipefail

declare -A pkgs=(
	[protoc-gen-go]=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	[protoc-gen-go-grpc]=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	[grpcurl]=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
	[grpc-health-probe]=github.com/grpc-ecosystem/grpc-health-probe@v0.4.62
)
tools=("$@")
if ((${#tools[@]} == 0)); then
	tools=(protoc-gen-go protoc-gen-go-grpc grpcurl grpc-health-probe)
fi
for tool in "${tools[@]}"; do
	pkg=${pkgs[$tool]:?unknown tool $tool (want one of ${!pkgs[*]})}
	go install "$pkg"
done
