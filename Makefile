# Every target works on all modules of go.work; none keeps its own list.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

# Package patterns of every module in the workspace.
PACKAGES = $(shell go list -m -f '{{.Dir}}/...')
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
STATICCHECK := go run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test services services-stop release-check lint tidy deps fmt demo chaos bench

# The servers the tests use: the OUTBOX_TEST_* variables when set, else the
# ones `scripts/services` installs and starts on loopback.
OUTBOX_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
OUTBOX_TEST_MYSQL_URL ?= root:@tcp(127.0.0.1:3306)/test
OUTBOX_TEST_NATS_URL ?= nats://127.0.0.1:4222
OUTBOX_TEST_KAFKA_BROKERS ?= 127.0.0.1:9092
OUTBOX_TEST_MONGO_URL ?= mongodb://127.0.0.1:27017/?directConnection=true
OUTBOX_TEST_KAFKA_HOME ?= $(shell scripts/services env kafka | sed -n "s/^export OUTBOX_TEST_KAFKA_HOME='\(.*\)'$$/\1/p")
export OUTBOX_TEST_POSTGRES_URL OUTBOX_TEST_MYSQL_URL OUTBOX_TEST_NATS_URL OUTBOX_TEST_KAFKA_BROKERS OUTBOX_TEST_MONGO_URL OUTBOX_TEST_KAFKA_HOME

# Which servers `make services` (and so `make test`) sets up: SERVICES=none
# when the OUTBOX_TEST_* variables point at servers of your own.
SERVICES ?= postgres mysql nats kafka mongo chromium

## test: set up the servers (make services), run every module's tests with -race, and end with a
## summary: the server each backend used, every skipped test with its reason
test: services
	go test -json $(GO_TEST_FLAGS) $(PACKAGES) | go run ./scripts/testsummary

## services: install and start the test servers on loopback (scripts/services; idempotent)
services:
	@if [[ "$(SERVICES)" != none ]]; then scripts/services start $(SERVICES); fi

## services-stop: stop the servers that scripts/services started
services-stop:
	scripts/services stop

## lint: gofmt, go vet, staticcheck, tidy go.mod files, dependency promises
lint:
	@unformatted=$$(gofmt -l $$(go list -m -f '{{.Dir}}')); \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet $(PACKAGES)
	$(STATICCHECK) $(PACKAGES)
	.ci/tidy -check
	.ci/deps

## release-check: install cmd/outbox@v0.1.0 and cmd/outbox-demo@v0.1.0, and build a user's service from the modules packed as published
release-check:
	.ci/release-check

## tidy: go mod tidy every module (siblings at v0.1.0, replaced by their directories)
tidy:
	.ci/tidy

## deps: check that core needs only the standard library and that adapters stay apart
deps:
	.ci/deps

fmt:
	gofmt -w $$(go list -m -f '{{.Dir}}')

## demo: the whole pipeline on embedded defaults (SQLite, embedded NATS); no server needed
## (outbox-demo: `outbox demo` in a program that links only what the demo needs)
demo:
	go run ./cmd/outbox-demo

## chaos: every fault scenario at full size (chaos.Long) for every pair; the table goes into docs/guarantees.md
chaos: services
	status=0; report=$$(mktemp); trap 'rm -f "$$report" "$$report.md"' EXIT; \
	OUTBOX_CHAOS=long OUTBOX_CHAOS_PARALLEL=$${OUTBOX_CHAOS_PARALLEL:-4} OUTBOX_CHAOS_REPORT=$$report \
		go test -count=1 -timeout 120m -run '^TestChaos$$' ./cmd/outbox/ || status=$$?; \
	{ echo "Run by \`make chaos\` on $$(date -u '+%Y-%m-%d %H:%M UTC'), $$(nproc) cores, $$(go env GOVERSION):"; echo; \
	  echo '| pair | scenario | relays | faults | committed | delivered | lost | duplicates (bound) | order violations | rolled back | leaked | recovery | verdict |'; \
	  echo '|---|---|---|---|---|---|---|---|---|---|---|---|---|'; \
	  cat "$$report"; } > "$$report.md"; \
	awk -v table="$$report.md" '/^<!-- END make chaos -->/ { skip = 0 } !skip { print } \
		/^<!-- BEGIN make chaos/ { while ((getline line < table) > 0) print line; skip = 1 }' \
		docs/guarantees.md > docs/guarantees.md.tmp && mv docs/guarantees.md.tmp docs/guarantees.md; \
	echo "docs/guarantees.md: table updated"; exit $$status

# The flags of outbox-bench (cmd/outbox-bench, a module of its own): every store
# against kfake, the real Kafka broker and NATS. BENCH_FLAGS replaces the selection.
BENCH_FLAGS ?= --store '$(OUTBOX_TEST_POSTGRES_URL)' --store '$(OUTBOX_TEST_MYSQL_URL)' --store sqlite \
	--broker kfake --broker 'kafka://$(OUTBOX_TEST_KAFKA_BROKERS)' --broker '$(OUTBOX_TEST_NATS_URL)'
BENCH_PROFILES ?= .bench-profiles

## bench: measure every pair (minutes); rewrites docs/benchmarks.md and the charts in docs/bench
bench: services
	go run ./cmd/outbox-bench $(BENCH_FLAGS) --charts docs/bench --doc docs/benchmarks.md \
		--cpuprofile-dir $(BENCH_PROFILES)
