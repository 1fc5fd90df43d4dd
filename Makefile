# tjob — see README.md. Everything installs into .venv; targets need root where noted.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: install test test-faults test-cgroup2 test-aarch64 test-systemd test-cluster lint demo bench clean

install: $(STAMP)

# setup.py builds tjob-shim from src/tjob/shim/*.c and the protocol.h it generates from
# src/tjob/protocol/constants.py into the package (needs a C compiler); scripts/sysdeps.sh first installs
# the system packages that and the tests need, if missing.
$(STAMP): pyproject.toml setup.py src/tjob/protocol/constants.py src/tjob/protocol_h.py $(wildcard src/tjob/shim/*.c src/tjob/shim/*.h) scripts/sysdeps.sh
	PY=$(PY) bash scripts/sysdeps.sh
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The whole suite. As root the root-only tests must run: TJOB_REQUIRE_ROOT makes a skip of them an error.
test: install
	TJOB_REQUIRE_ROOT=$$( [ "$$(id -u)" = 0 ] && echo 1 || echo 0 ) $(VPY) -m pytest -q tests --ignore=tests/faults --ignore=tests/cluster

# Fault injection (root): damaged copies of every durable file, a full ext4 loop device (blocks,
# inodes), a stalled launcher, many ends while no engine runs.
test-faults: install
	TJOB_REQUIRE_ROOT=$$( [ "$$(id -u)" = 0 ] && echo 1 || echo 0 ) $(VPY) -m pytest -q tests/faults

# The cgroup v2 lane (root): boots a pure-v2 kernel under qemu and runs the tests marked cgroup2
# in it (this host is cgroup v1).
test-cgroup2: install
	bash tests/cgroup2/run.sh tests/test_cgroup2_real.py tests/test_engine.py \
		tests/test_clients.py tests/test_tenants.py tests/test_volumes.py \
		tests/adversarial/test_adv6_jail.py tests/test_stdin.py tests/test_exec.py

# The aarch64 lane (root): tjob-shim cross-built for aarch64, its seccomp selftest run on Debian's
# arm64 kernel under qemu (TCG) from a four-file initramfs (tests/aarch64/run.sh; ~20-30 s).
test-aarch64: install
	bash tests/aarch64/run.sh

# tjob on a Ray cluster (root, issue 18): installs the cluster extra (Ray) into the venv, then
# starts a Ray head, two tjobs nodes and a gateway in a private network namespace per module.
test-cluster: install
	$(VPY) -m pip install -q -e '.[dev,cluster]'
	TJOB_REQUIRE_ROOT=$$( [ "$$(id -u)" = 0 ] && echo 1 || echo 0 ) $(VPY) -m pytest -q tests/cluster

# tjobs as a systemd service (root): the same VM with the host's systemd as its init installs
# the unit, runs jobs through the CLI, restarts and stops tjobs (tests/cgroup2/systemd-test.sh).
test-systemd: install
	bash tests/cgroup2/run.sh --systemd

lint: install
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict bench

# The seed's CLI transcript against a tjobs it starts and stops (root). The library demo is
# examples/demo.py.
demo: install
	bash examples/demo.sh

# Benchmarks (root; not part of test). `make bench BENCH=B1,B3` runs some of them.
bench: install
	$(VPY) -m bench $(if $(BENCH),--only $(BENCH))

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
