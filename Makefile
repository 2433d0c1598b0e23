# Shoal — quick start: `make demo` (installs what is missing, builds, runs the example) and `make test`.
SWIFT ?= swift
# Debian packages Shoal needs: the C libraries it links, pkg-config, and mdb_stat for checks.
PACKAGES := liblmdb-dev libsodium-dev libzmq3-dev pkg-config lmdb-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN := .build/release/shoal

.PHONY: all deps build demo test bench simulate ci-swarm swarm proto cluster cluster-stop clean

all: build

## deps: install the Debian packages that are missing (apt-get), nothing if all are there
deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

## build: release build of the `shoal` command
build: deps
	$(SWIFT) build -c release --product shoal

## demo: the cross-correlation example on this machine (results persisted in .shoal/data, NumPy files in
## out/demo), the example workflow file, a simulated 16-peer cluster whose workflow owner crashes, and the
## example program on 16 simulated peers with two crashes (its .npy files compared with the local run's)
demo: build
	$(BIN) demo --export out/demo
	@echo
	$(BIN) run Examples/workflows/shout-twice.yaml --output-dir out/shout-twice
	@echo
	$(BIN) simulate Simulations/owner-crash.yaml
	@echo
	$(BIN) demo --simulate Simulations/cross-correlation-16.yaml --export out/demo-simulated
	cmp out/demo/cc_original.npy out/demo-simulated/cc_original.npy && cmp out/demo/cc_surrogates.npy out/demo-simulated/cc_surrogates.npy \
	  && cmp out/demo/spikes.npy out/demo-simulated/spikes.npy && echo "the 16 simulated peers exported the local run's .npy files, byte for byte"
	@echo
	@echo "== a three-peer loopback cluster (config/): start it, submit the example workflow file at peer b, show its status, stop it"
	scripts/cluster start $(BIN)
	$(BIN) submit Examples/workflows/fan-out.yaml --peer tcp://127.0.0.1:7102 --output-dir out/cluster/fan-out \
	  || { scripts/cluster stop $(BIN); exit 1; }
	$(BIN) submit Examples/workflows/shout-twice.yaml --peer tcp://127.0.0.1:7102 --output-dir out/cluster/shout-twice \
	  || { scripts/cluster stop $(BIN); exit 1; }
	cmp out/shout-twice/loud out/cluster/shout-twice/loud && cmp out/shout-twice/counts out/cluster/shout-twice/counts \
	  && [ "$$(sort out/shout-twice/log)" = "$$(sort out/cluster/shout-twice/log)" ] \
	  && echo "the cluster wrote shoal run's outputs (the commutative log's lines in any order)"
	$(BIN) status --peer tcp://127.0.0.1:7101; $(BIN) status --peer tcp://127.0.0.1:7103
	scripts/cluster stop $(BIN)

## cluster: start the three-peer loopback cluster of config/ in the background (pids, stdout and
## logs under .shoal/cluster/); then `shoal submit FILE --peer tcp://127.0.0.1:7101` (or 7102, 7103)
cluster: build
	scripts/cluster start $(BIN)

## cluster-stop: stop it (SIGTERM: each peer leaves gracefully)
cluster-stop:
	scripts/cluster stop $(BIN)

## test: every test (Swift Testing), debug build
test: deps
	$(SWIFT) test

## bench: the benchmarks recorded in the README
bench: build
	$(BIN) bench trivial
	$(BIN) bench stencil --metg
	$(BIN) bench memory
	$(BIN) bench store
	$(BIN) bench exec
	$(BIN) bench simulator --peers 64 --seconds 2000
	$(BIN) bench simulator
	$(BIN) simulate Simulations/million-tasks.yaml

## simulate: every scenario in Simulations/ on seed 1
simulate: build
	@for f in Simulations/*.yaml; do echo "== $$f"; $(BIN) simulate $$f --seed 1 || exit 1; done

## ci-swarm: the fixed swarm seeds CI replays on every run (release build, about a minute):
## membership under crashes and partitions, workflows (with failing tasks), workflow files with real
## exec and registered bodies, and persistent objects under faults
ci-swarm: build
	$(BIN) simulate Simulations/crash-and-restart.yaml --swarm --seed 1 --seeds 200
	$(BIN) simulate Simulations/partition-heals.yaml --swarm --seed 1 --seeds 200
	$(BIN) simulate Simulations/swarm-workflows.yaml --swarm --seed 1 --seeds 200
	$(BIN) simulate Simulations/failing-tasks.yaml --swarm --seed 1 --seeds 200
	$(BIN) simulate Simulations/file-workflows.yaml --swarm --seed 1 --seeds 100
	$(BIN) simulate Simulations/growing-programs.yaml --swarm --seed 1 --seeds 200
	$(BIN) simulate Simulations/persistent-objects-churn.yaml --swarm --seed 1 --seeds 100

## swarm: thousands of seeds with faults drawn from each seed (SEEDS=N to change, FROM=first seed)
SEEDS ?= 2000
FROM ?= 1
swarm: build
	$(BIN) simulate Simulations/crash-and-restart.yaml --swarm --seed $(FROM) --seeds $(SEEDS)
	$(BIN) simulate Simulations/swarm-workflows.yaml --swarm --seed $(FROM) --seeds $(SEEDS)
	$(BIN) simulate Simulations/persistent-objects-churn.yaml --swarm --seed $(FROM) --seeds $(SEEDS)

## proto: regenerate Sources/ShoalWire/Generated from Protos/ (committed; CI never runs this).
## Needs Debian's protobuf-compiler; builds protoc-gen-swift once, from the swift-protobuf version
## Package.swift names, under .build-protoc/.
PROTOBUF_VERSION := 1.39.0
PROTOC_GEN_SWIFT := .build-protoc/swift-protobuf/.build/release/protoc-gen-swift
$(PROTOC_GEN_SWIFT):
	@dpkg -s protobuf-compiler >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq protobuf-compiler >/dev/null; }
	rm -rf .build-protoc/swift-protobuf && mkdir -p .build-protoc
	git clone -q --depth 1 --branch $(PROTOBUF_VERSION) https://github.com/apple/swift-protobuf .build-protoc/swift-protobuf
	cd .build-protoc/swift-protobuf && $(SWIFT) build -c release --product protoc-gen-swift
proto: $(PROTOC_GEN_SWIFT)
	@dpkg -s protobuf-compiler >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq protobuf-compiler >/dev/null; }
	mkdir -p Sources/ShoalWire/Generated
	protoc --plugin=protoc-gen-swift=$(PROTOC_GEN_SWIFT) --proto_path=Protos \
	  --swift_out=Sources/ShoalWire/Generated --swift_opt=Visibility=Public --swift_opt=FileNaming=DropPath \
	  Protos/shoal/wire/v1/shoal.proto

clean:
	rm -rf .build out .shoal
