# Switchboard: two commands on a fresh machine with the Rust toolchain and Python.
#   make dev    runs the whole pipeline locally (emulator, ingest, transform, deliver, a sink)
#   make test   runs the unit and end-to-end tests, the integrations' fixtures
#               (`switchboard check`), and lints the SAM template
#   make package  builds the four functions' arm64 zips that a deploy uploads

PYTHON ?= python3
VENV   ?= .venv
CARGO  ?= cargo
TARGET_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# The CLI as `cargo build --workspace` (or `cargo test --workspace`) built it: `cargo run -p`
# would resolve the dependencies' features for that one package and compile them all again.
SWITCHBOARD = $(TARGET_DIR)/debug/switchboard
# The Lambda functions: the template's BuildProperties.Binary values (a test holds them equal).
FUNCTIONS = ingest transform deliver rotate
export SAM_CLI_TELEMETRY = 0

.PHONY: dev test check lint venv build package sam-build send events invoke watch bench bench-mapping fuzz clean

dev: venv build
	$(SWITCHBOARD) dev --secrets dev/secrets.yaml --sink-port 3001

test: venv
	$(CARGO) test --workspace
	$(SWITCHBOARD) check --allow-loopback integrations
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV)/bin/sam validate --lint --template infra/template.yaml

# Validate the integration definitions and run their fixtures (contract tests).
check: build
	$(SWITCHBOARD) check --allow-loopback integrations

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

build:
	$(CARGO) build --workspace

# The zips a deploy uploads, as sam build's rust-cargolambda method builds them: aarch64 release
# binaries for provided.al2023, each zipped as `bootstrap` in $(TARGET_DIR)/lambda/<function>/,
# then checked (aarch64, under 8,000,000 bytes). infra/with-arm64-toolchain finds or installs a
# toolchain that can build for aarch64, or says what is missing.
package: venv
	infra/with-arm64-toolchain cargo-lambda lambda build --release --arm64 --output-format zip \
		$(addprefix --bin ,$(FUNCTIONS))
	infra/check-package $(TARGET_DIR)/lambda $(FUNCTIONS)

# `sam build` with the same toolchain (into .aws-sam/); then `sam deploy --guided`.
sam-build: venv
	infra/with-arm64-toolchain sam build

# With `make dev` running: post the example order, signed with the dev secret.
send: build
	$(SWITCHBOARD) send example --file dev/order.json

# A freshly signed API Gateway event for `cargo lambda invoke ingest` (the checked-in one is stale).
events: build
	$(SWITCHBOARD) send example --file dev/order.json --lambda-event events/ingest/webhook.signed.json

# With `make dev` running (emulator, queues, sink) and `make watch` in another terminal.
invoke: events
	$(VENV)/bin/cargo-lambda lambda invoke ingest --data-file events/ingest/webhook.signed.json
	$(VENV)/bin/cargo-lambda lambda invoke transform --data-file events/transform/event.json
	$(VENV)/bin/cargo-lambda lambda invoke deliver --data-file events/deliver/delivery.json

watch: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo-lambda lambda watch --env-file events/local.env

# The budgets in BENCHMARKS.md: cold start beside hello-world, the archive search (10,000 events)
# beside its floor, then ingest's warm path beside
# its floor (criterion).
bench: venv
	$(CARGO) build --release -p ingest -p transform -p deliver -p rotate -p hello -p switchboard-bench
	$(TARGET_DIR)/release/coldstart
	$(TARGET_DIR)/release/search
	$(CARGO) bench --package switchboard-bench --bench ingest

# Mapping a 5 KB Shopify order: Switchboard's engine beside the reference JSONata (npm, installed
# here for the benchmark only), and transform's overhead around the mapping.
bench-mapping:
	npm ci --prefix bench/jsonata-js --no-audit --no-fund
	$(CARGO) run --release --package switchboard-bench --bin mapping

# Fuzz request parsing and verification for FUZZ_SECONDS (needs `cargo install cargo-fuzz`;
# RUSTC_BOOTSTRAP lets the stable toolchain take cargo-fuzz's flags).
FUZZ_SECONDS ?= 60
fuzz:
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run request --sanitizer none -- -max_total_time=$(FUZZ_SECONDS)

clean:
	$(CARGO) clean
	rm -rf $(VENV)
