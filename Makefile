# goloop: make is the front door (STYLE.md 10).
#   make build     build the extension in place for $(PYTHON)
#   make test      Go tests (plain and -race) + the Python suite on every CPython 3.11-3.15 found
#   make test-cgocheck2   the Python suite once against a GOEXPERIMENT=cgocheck2 build
#   make bench     asyncio vs uvloop vs rloop vs goloop, interleaved
#   make example   build and run the example under goloop
#   make clean
PYTHON ?= python3
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
PY_INCLUDE := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])")
EXT := goloop/_goloop$(EXT_SUFFIX)
GO_SOURCES := $(wildcard core/*.go pybridge/*.go pybridge/*.c pybridge/*.h) go.mod go.sum

.PHONY: build test test-go test-python test-cgocheck2 bench example clean conformance bench-net

build: $(EXT)

# c-shared is the one extension module (design README §4): the interpreter
# provides the Python symbols, so libpython is not linked.
$(EXT): $(GO_SOURCES)
	CGO_CFLAGS="-O2 -I$(PY_INCLUDE)" go build -buildmode=c-shared -o $@ ./pybridge
	rm -f $(basename $@).h

test:
	./scripts/test-all.sh

test-go:
	go vet ./...
	go test ./...
	go test -race ./...

test-python: build
	$(PYTHON) -m pytest tests -p no:cacheprovider -q

test-cgocheck2:
	./scripts/test-cgocheck2.sh

bench: build
	$(PYTHON) bench/run.py

# The example imports goloop from this checkout, built in place: python puts
# examples/, not the checkout, on sys.path.
example: build
	PYTHONPATH=$(CURDIR) $(PYTHON) examples/hello.py

clean:
	rm -f goloop/_goloop*.so goloop/_goloop*.h
	rm -rf build dist *.egg-info .venvs

# CPython's own test.test_asyncio against goloop; expected failures with their
# reasons are in tests/conformance/expectations.txt. Extra options (--json
# FILE, -j N, module names) go in CONFORMANCE_ARGS.
conformance: build
	$(PYTHON) tests/conformance/run_cpython.py $(CONFORMANCE_ARGS)

# Network benchmarks (bench/README.md, "Network benchmarks"): echo/HTTP servers on
# each loop under a Go load generator and wrk. Options go in BENCH_NET_ARGS, e.g.
# make bench-net BENCH_NET_ARGS="--quick --plot net.png".
bench-net: build
	$(PYTHON) bench/net/run.py $(BENCH_NET_ARGS)
