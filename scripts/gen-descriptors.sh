#!/bin/sh
# Regenerates proto/verdict.binpb, the descriptor set the server loads and serves
# over reflection. It is committed so that running the server needs no protoc;
# test/grpc/descriptors.test.ts regenerates it and fails if the two differ.
#
# Usage: scripts/gen-descriptors.sh [OUTPUT]   (default: proto/verdict.binpb)
# Needs protoc (Debian: apt-get install protobuf-compiler); the well-known types
# (google/protobuf/*.proto) come from protoc's own include directory.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/proto/verdict.binpb"}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$root/proto"
# The order of files in the set is part of its bytes: keep this list stable.
# The committed file was made with protoc 3.21.12 (Debian bookworm); another
# protoc version may embed different well-known-type comments, failing the drift test.
exec protoc \
  --include_imports \
  --include_source_info \
  --descriptor_set_out="$out" \
  -I . \
  verdict/v1/authorization.proto \
  verdict/v1/admin.proto \
  grpc/health/v1/health.proto \
  grpc/reflection/v1/reflection.proto \
  grpc/reflection/v1alpha/reflection.proto \
  envoy/service/auth/v3/external_auth.proto
