# Entry points for the scripts in scripts/. Each target runs one script; see its header.
#
#   make test       the whole test suite (scripts/test; CI runs exactly this)
#   make demo       the quickstart against a throwaway etcd (scripts/demo)
#   make bench      the client benchmark (scripts/bench), then the agent's (scripts/mirror-bench)
#   make faults     the fault suite with its long variants (scripts/faults)
#   make deb        dist/etcsync_VERSION_amd64.deb from a static release build (scripts/build-deb)
#   make test-deb   builds and checks the package from BINARY (scripts/test-deb)
#
# Pass options through DEB_FLAGS, e.g. make deb DEB_FLAGS="--binary path/to/etcsync --out /tmp/dist".

BINARY ?= .build/release/etcsync
DEB_FLAGS ?=

.PHONY: all test demo bench deb test-deb faults

all: test

test:
	scripts/test

demo:
	scripts/demo

bench:
	scripts/bench
	scripts/mirror-bench --repeat 3

deb:
	scripts/build-deb $(DEB_FLAGS)

test-deb:
	scripts/test-deb --binary $(BINARY)

faults:
	scripts/faults
