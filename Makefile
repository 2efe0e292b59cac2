# storkeep: `make build`, `make test`, `make demo`, `make deb`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0~dev)
endif
LDFLAGS := -X main.version=$(VERSION)
# A count of inputs per target (Nx) rather than a duration: before Go 1.27 a
# duration can end in a spurious "context deadline exceeded" failure
# (golang/go#75804).
FUZZTIME ?= 500000x

# The tests start private dbus-daemons and use gdbus and busctl; the
# package (make deb, make e2e, make demo) is built by dpkg-buildpackage
# with debhelper, and checked with lintian and mandoc.
DEPS_TOOLS := dbus-daemon dbus-send gdbus busctl dpkg-buildpackage dh lintian mandoc
# Debian package of each tool, in the same order.
DEPS_PKGS := dbus dbus libglib2.0-bin systemd dpkg-dev debhelper lintian mandoc
# The Python example client (packaging/examples) runs in the tests with
# Debian's python3 and its Gio bindings.
PYTHON_GI_CHECK := /usr/bin/python3 -c 'import gi; gi.require_version("Gio", "2.0")' >/dev/null 2>&1

.PHONY: all build test test-unit test-fast testhost e2e deps bench bench-local bench-host bench-table fuzz deb demo demo-bus clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/storkeepd ./cmd/storkeepctl

# Everything: unit and component tests on this machine, then the
# end-to-end suite in the test host (built on first use, then cached).
# `make test-unit` (or `make test-fast`, without the race detector) runs
# only the tests that need no test host.
test: test-unit e2e

test-unit: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

test-fast:
	$(GO) test ./...

# The test host: a User-mode Linux guest with systemd, nfsd, tgt and
# iscsiadm (testhost/README.md). Built once, cached by its recipe; then
# testhost/smoke.sh proves, in a guest, what the suite relies on.
testhost:
	bash testhost/build.sh
	bash testhost/run.sh testhost/smoke.sh dist/testhost-smoke

E2E_DIR ?= dist/e2e
# Builds the .deb and the suite, boots the test host, installs the package
# there and runs the suite against the packaged service. A subset:
# `make e2e STORKEEP_E2E_RUN=NFS` (a go test -run pattern).
e2e: deps
	rm -rf $(E2E_DIR) && mkdir -p $(E2E_DIR)
	GO='$(GO)' bash packaging/build-deb.sh '$(VERSION)' $(E2E_DIR)/deb >/dev/null
	cp $(E2E_DIR)/deb/storkeep_*.deb $(E2E_DIR)/storkeep.deb
	CGO_ENABLED=0 $(GO) test -c -tags e2e -o $(E2E_DIR)/e2e.test ./e2e
	cp testhost/e2e-guest.sh testhost/smoke.sh $(E2E_DIR)/
	STORKEEP_TESTHOST_TIMEOUT=$${STORKEEP_TESTHOST_TIMEOUT:-1500} bash testhost/run.sh $(E2E_DIR)/e2e-guest.sh $(E2E_DIR)/out

# Installs the tools the tests need, with apt and only when one is missing.
deps:
	@tools=($(DEPS_TOOLS)); pkgs=($(DEPS_PKGS)); missing=(); \
	for i in "$${!tools[@]}"; do \
		command -v "$${tools[$$i]}" >/dev/null 2>&1 || missing+=("$${pkgs[$$i]}"); \
	done; \
	$(PYTHON_GI_CHECK) || missing+=(python3-gi); \
	if [ "$${#missing[@]}" -gt 0 ]; then \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		echo "deps: installing $${missing[*]}"; \
		$$sudo apt-get update -qq; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi

# Benchmarks: the daemon's own (on this machine, private bus, with the
# 100,000-CID one), then the storage ones in the test host (real mounts
# and logins), then one table of every measure with its floor
# (bench-table alone prints it again from the files the last run left).
bench: bench-local bench-host
	@$(MAKE) --no-print-directory bench-table

bench-local:
	STORKEEP_BENCH_100K=1 $(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 120m ./... | tee bench.txt

bench-table:
	@shopt -s nullglob; $(GO) run ./internal/benchtable bench.txt dist/bench-host/out/bench-*.txt

bench-host:
	$(MAKE) e2e E2E_DIR=dist/bench-host STORKEEP_E2E_RUN=Bench STORKEEP_E2E_BENCH=1 STORKEEP_E2E_SMOKE=0
	cat dist/bench-host/out/bench-*.txt

# Runs every fuzz target for FUZZTIME inputs each (go test -fuzz takes one target
# of one package at a time). The targets are read from the test files that
# go list puts in each package's build (`func FuzzXxx(` at the top level):
# `go test -list` would compile and link every package's tests first.
fuzz:
	@found=0; \
	pkgs=$$($(GO) list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...); \
	while read -r pkg dir files; do \
		[ -n "$$files" ] || continue; \
		for target in $$(cd "$$dir" && sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$files); do \
			found=1; \
			echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done <<<"$$pkgs"; \
	[ "$$found" = 1 ] || echo "fuzz: no fuzz targets found"

# The Debian package, from debian/ (dpkg-buildpackage; README "Packaging"),
# into dist/: the .deb, the source package and the .changes, which lintian
# then checks (it fails on an error; each remaining warning is in the
# README).
deb: deps
	deb=$$(GO='$(GO)' bash packaging/build-deb.sh '$(VERSION)' dist | tail -n 1); \
	echo "deb: $$deb"; \
	lintian --fail-on error --display-info "$${deb%.deb}.changes"

# The README's first command: storkeep's main job against real targets in
# the test host (NFS and iSCSI behind veth links, a link failure and the
# reconnect). `make demo-bus` is a shorter walk on a private bus, with no
# storage.
DEMO_DIR := dist/demo
demo: deps
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	GO='$(GO)' bash packaging/build-deb.sh '$(VERSION)' $(DEMO_DIR)/deb >/dev/null
	cp $(DEMO_DIR)/deb/storkeep_*.deb $(DEMO_DIR)/storkeep.deb
	cp testhost/demo-guest.sh $(DEMO_DIR)/
	STORKEEP_TESTHOST_FOLLOW=1 bash testhost/run.sh $(DEMO_DIR)/demo-guest.sh $(DEMO_DIR)/out

demo-bus: build
	bash packaging/demo.sh

clean:
	rm -rf bin dist bench.txt
