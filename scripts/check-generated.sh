#!/usr/bin/env bash
# Regenerates pb/ with the pinned protoc plugins and fails if the result
# differs from the checked-in code.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
	echo "check-generated: protoc not found; apt-get install protobuf-compiler" >&2
	exit 1
fi
scripts/install-grpc-tools.sh protoc-gen-go protoc-gen-go-grpc
gobin=$(go env GOBIN)
gopath=$(go env GOPATH)
export PATH="${gobin:-${gopath%%:*}/bin}:$PATH"

go generate ./pb
if ! git diff --exit-code -- pb/ || [[ -n $(git ls-files --others --exclude-standard -- pb/) ]]; then
	echo "check-generated: pb/ differs from what go generate ./pb makes (with $(protoc --version));" \
		"regenerate with scripts/check-generated.sh and commit pb/" >&2
	exit 1
fi
