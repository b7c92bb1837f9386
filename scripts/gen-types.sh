#!/bin/sh
# Regenerates src/server/grpc/generated/: the TypeScript types of the messages and
# services in proto/, written by proto-loader-gen-types (from @grpc/proto-loader).
# The server's handlers are typed by them; test/grpc/generated-types.test.ts
# regenerates them into a temporary directory and fails if the committed ones differ.
#
# The flags mirror LOADER_OPTIONS in src/server/grpc/descriptors.ts (how messages
# look at run time): camelCase fields, 64-bit integers and enums as strings,
# defaults filled in, a oneof's member named in a virtual field. The test checks
# that the two agree.
#
# Usage: scripts/gen-types.sh [OUTPUT]   (default: src/server/grpc/generated)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/src/server/grpc/generated"}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$root"
# Files of a message or service that no longer exists must not linger.
if [ -d "$out" ]; then
  find "$out" -type f -name '*.ts' -delete
  find "$out" -type d -empty -delete
fi
# grpc/reflection/v1alpha is left out: its messages are those of v1, and both
# files are called reflection.proto, which the generator would write to one file.
exec "$root/node_modules/.bin/proto-loader-gen-types" \
  --longs=String \
  --enums=String \
  --defaults \
  --oneofs \
  --grpcLib=@grpc/grpc-js \
  --importFileExtension=.js \
  -I proto \
  -O "$out" \
  verdict/v1/authorization.proto \
  verdict/v1/admin.proto \
  grpc/health/v1/health.proto \
  grpc/reflection/v1/reflection.proto \
  envoy/service/auth/v3/external_auth.proto
