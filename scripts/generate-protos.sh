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

# Copy the three protos, dropping the gogoproto and google.api.http options, which only
# matter to Go code and the JSON gateway, and rewriting imports to the copied layout.
mkdir -p "$work/protos/etcd/mvcc/mvccpb" "$work/protos/etcd/auth/authpb" "$work/protos/etcd/etcdserver/etcdserverpb"
python3 - "$src" "$work/protos" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
for rel in ("mvcc/mvccpb/kv.proto", "auth/authpb/auth.proto", "etcdserver/etcdserverpb/rpc.proto"):
    text = open(f"{src}/{rel}").read()
    text = re.sub(r'import "gogoproto/gogo.proto";\n', "", text)
    text = re.sub(r'import "google/api/annotations.proto";\n', "", text)
    text = re.sub(r'option \(gogoproto\.[a-z_]+\) = (true|false);\n', "", text)
    text = re.sub(r'\s*option \(google\.api\.http\) = \{(?:[^{}]|\{[^{}]*\})*\};', "", text)
    text = re.sub(r'\s*\[\(gogoproto\.[^\]]*\]', "", text)
    assert "gogoproto" not in text and "google.api" not in text, rel
    open(f"{dst}/etcd/{rel}", "w").write(text)
PY

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
