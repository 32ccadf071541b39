# Every target works on all modules of go.work; none keeps its own list.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

# Package patterns of every module in the workspace.
PACKAGES = $(shell go list -m -f '{{.Dir}}/...')
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
STATICCHECK := go run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test lint tidy deps fmt

## test: run every module's tests (set OUTBOX_TEST_* to reach servers; see README)
test:
	go test $(GO_TEST_FLAGS) $(PACKAGES)

## lint: gofmt, go vet, staticcheck, tidy go.mod files, dependency promises
lint:
	@unformatted=$$(gofmt -l $$(go list -m -f '{{.Dir}}')); \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	go vet $(PACKAGES)
	$(STATICCHECK) $(PACKAGES)
	.ci/tidy -check
	.ci/deps

## tidy: go mod tidy every module (siblings at v0.1.0, replaced by their directories)
tidy:
	.ci/tidy

## deps: check that core needs only the standard library and that adapters stay apart
deps:
	.ci/deps

fmt:
	gofmt -w $$(go list -m -f '{{.Dir}}')
