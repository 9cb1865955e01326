# coco's build and checks. `make test` is the command CI runs (.ci/run).
GO ?= go

.PHONY: all build test vet lint fmt-check fuzz clean ethjs-deps

# Pinned so local runs and CI lint alike; `go run` fetches it from the module proxy.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

all: build

build:
	$(GO) build -o bin/coco ./cmd/coco

# The default suite: formatting, vet, staticcheck, and every test (unit, fuzz
# seed corpora, end-to-end with real coco processes) under the race detector.
test: fmt-check vet lint ethjs-deps
	$(GO) test -race -count=1 -timeout 15m ./...

# The ethers.js tests' npm packages (ethers, solc), as locked; test/e2e runs
# them against a sandbox.
ethjs-deps: test/ethjs/node_modules/.package-lock.json
test/ethjs/node_modules/.package-lock.json: test/ethjs/package.json test/ethjs/package-lock.json
	cd test/ethjs && npm ci --no-audit --no-fund

vet:
	$(GO) vet ./...

lint:
	$(GO) run $(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Short fuzzing of every decoder (not part of `make test`, which runs only
# the seed corpora in testdata/fuzz).
FUZZTIME ?= 30s
FUZZ_TARGETS = \
	./ledger:FuzzUnmarshalEntry \
	./kv:FuzzUnmarshalWriteSet \
	./gov:FuzzCreateProposal ./gov:FuzzSignedProposal \
	./receipt:FuzzParseJSON ./receipt:FuzzVerifyCOSE \
	./crypto:FuzzParsePEM ./crypto:FuzzUnmarshalSecrets ./crypto:FuzzOpen \
	./consensus/transport:FuzzReadFrame \
	./gov/cose:FuzzParse \
	./gov/constitution:FuzzTransformModule
# Minimising new inputs is off: FuzzSignedProposal's minimiser stalled the
# engine (0 execs/s after ~5k inputs); without it that target runs ~800/s.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 0 || exit 1; \
	done

clean:
	rm -rf bin workspace test/ethjs/node_modules
