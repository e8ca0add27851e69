#!/usr/bin/env bash
# Regenerates Sources/EtcdClient/Generated/*.swift from etcd's v3 protos.
#
# Needs: Debian's protobuf-compiler and golang-etcd-server-dev (the .proto files), and the two
# protoc plugins, which this script builds once in release mode from the machine's package
# copies (about 1.5 minutes) unless PROTOC_GEN_SWIFT / PROTOC_GEN_GRPC_SWIFT point at them.
# The normal `swift build` never runs this: the generated files are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
src=${ETCD_PROTO_ROOT:-/usr/share/gocode/src/go.etcd.io/etcd}
out=$root/Sources/EtcdClient/Generated

if ! command -v protoc >/dev/null || [ ! -f "$src/etcdserver/etcdserverpb/rpc.proto" ]; then
  apt-get install -y -qq protobuf-compiler golang-etcd-server-dev >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "${PROTOC_GEN_SWIFT:-}" ] || [ -z "${PROTOC_GEN_GRPC_SWIFT:-}" ]; then
  echo "building protoc plugins (release)..." >&2
  git clone -q "${GRPC_SWIFT_PROTOBUF_GIT:-https://github.com/grpc/grpc-swift-protobuf.git}" "$work/gsp"
  git -C "$work/gsp" checkout -q 2.4.1
  (cd "$work/gsp" && swift build -c release --product protoc-gen-grpc-swift-2 >/dev/null \
     && swift build -c release --product protoc-gen-swift >/dev/null)
  bin=$(cd "$work/gsp" && swift build -c release --show-bin-path)
  PROTOC_GEN_SWIFT=$bin/protoc-gen-swift
  PROTOC_GEN_GRPC_SWIFT=$bin/protoc-gen-grpc-swift-2
fi

scripts/prepare-protos "$work/protos" "$src"

rm -f "$out"/*.swift
protoc -I "$work/protos" \
  --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" \
  --plugin=protoc-gen-grpc-swift="$PROTOC_GEN_GRPC_SWIFT" \
  --swift_opt=Visibility=Package,FileNaming=DropPath \
  --swift_out="$out" \
  --grpc-swift_opt=Visibility=Package,Server=false,Client=true,FileNaming=DropPath \
  --grpc-swift_out="$out" \
  etcd/mvcc/mvccpb/kv.proto etcd/auth/authpb/auth.proto etcd/etcdserver/etcdserverpb/rpc.proto
# kv.proto and auth.proto define no services: drop their empty client files.
rm -f "$out/kv.grpc.swift" "$out/auth.grpc.swift"
wc -l "$out"/*.swift
