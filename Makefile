# tcpcopy-go build, test and benchmark entry points.
# `make test` is what CI runs (.ci/run); it installs what a fresh machine lacks.

GO          ?= go
STATICCHECK_VERSION := v0.8.2
BIN         := $(CURDIR)/bin
TOOLS       := $(CURDIR)/.bin
STATICCHECK := $(TOOLS)/staticcheck
FUZZTIME    ?= 10s
BENCHTIME   ?= 1s
COUNT       ?= 1

CMDS := $(notdir $(wildcard cmd/*))

.PHONY: all build test unit bench fuzz lint fmt-check vet staticcheck deps demo bench-lab clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting:"; echo "$$out"; exit 1; fi

vet: deps
	$(GO) vet ./...

staticcheck: deps $(STATICCHECK)
	$(STATICCHECK) ./...

lint: fmt-check vet staticcheck

# unit and integration tests (namespace tests run when root, skip otherwise),
# then every benchmark once so that they keep compiling and running.
unit: deps build
	$(GO) test -count=$(COUNT) ./...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./...

test: lint unit

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) ./...

fuzz: deps
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# the whole copy in four network namespaces, with a report (docs/lab.md),
# the target answering differently for 30 of 1000 requests so that the
# response comparison has something to find; about 15 s, root only; leaves
# no namespace, process or interface behind. ARGS adds flags: another
# target server, for example nginx: make demo ARGS='--target-server
# nginx-kr100'; make demo ARGS=--mysql copies MySQL (docs/mysql.md); make demo
# ARGS='--tls-terminator nginx' copies an HTTPS service on the plaintext hop
# behind nginx (docs/deployment.md, "Copying HTTPS services").
ARGS ?=
demo: build
	$(BIN)/tcpcopy-lab run --demo $(ARGS)

# the performance goals (tcpcopy CPU per 10k requests at fixed rates, five
# runs each), the client-stack matrix (every labrun.ClientStacks row live,
# recorded, and replayed offline), the loss table (every labrun.LossLevels
# entry with short and keep-alive connections), the target servers (every
# labrun.TargetServers row, nginx included, with keep-alive, short and
# pipelined connections), the cost of the response comparison (off and on,
# interleaved), then the highest request rate copied with fidelity >=
# 99.9 %, for short and keep-alive connections, with CPU and memory;
# figures into bench-results/ (benchstat format) so that runs compare. At
# most 13 minutes, root only; some phases only:
# bin/tcpcopy-lab bench --phases matrix,loss,targets,compare (docs/lab.md).
bench-lab: build
	$(BIN)/tcpcopy-lab bench --out bench-results

clean:
	rm -rf $(BIN) $(TOOLS)
	$(GO) clean -testcache
