// Package pb holds the gRPC contract of the string service, stringsvc.proto,
// and the code protoc generates from it. Regenerate with `go generate ./pb`;
// scripts/install-grpc-tools.sh installs the generators at the versions the
// checked-in code was made with, and scripts/check-generated.sh fails when
// the two differ.
package pb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative stringsvc.proto
