# Cloud Dragon: `make run` serves on 127.0.0.1:8081 with data in ./cdragon-data,
# `make test` runs the whole suite. Both set everything up first (.venv at the repo root,
# with the `cdragon` command in .venv/bin).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CORE_SRC := $(wildcard cdragon/_core.pyx cdragon/core/*.pyx cdragon/core/*.pxi cdragon/core/*.pxd cdragon/core/*.h)
CORE_SO  := cdragon/.core-built
INSTALLED := $(VENV)/.cdragon-installed

.PHONY: run test testdeps setup bench quick-bench binary clean sysdeps

setup: $(CORE_SO) $(INSTALLED)

# Debian packages the build needs (venv, headers, a C compiler); installed only when missing.
sysdeps:
	@$(PYTHON) -c 'import sys, ensurepip, sysconfig, os; assert sys.version_info >= (3, 11), "Python 3.11+ needed"; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null && command -v cc >/dev/null \
	  || (apt-get update && apt-get install -y python3-venv python3-dev build-essential)

$(VENV)/.deps: requirements.txt
	@$(MAKE) --no-print-directory sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(CORE_SO): $(VENV)/.deps $(CORE_SRC) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

# The project itself, installed editable into .venv: that makes .venv/bin/cdragon (the
# console script of pyproject.toml). An editable install maps the package to this
# checkout's cdragon/, so edited .py files and a core rebuilt in place above are used as
# they are: only pyproject.toml, setup.py or the version call for a reinstall (the core
# is an order-only prerequisite: built first, so pip finds it up to date, but a rebuilt
# core reinstalls nothing). The stamp holds the checkout's path: a .venv last installed
# from another checkout (one venv shared by several) is pointed back at this one.
ifneq ($(shell cat $(INSTALLED) 2>/dev/null),$(CURDIR))
.PHONY: $(INSTALLED)
endif
$(INSTALLED): pyproject.toml setup.py cdragon/__init__.py | $(CORE_SO)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	echo '$(CURDIR)' > $@

run: setup
	$(VENV)/bin/cdragon serve --listen 127.0.0.1:8081 --data-dir ./cdragon-data

# the packaging tests run systemd-analyze (in Debian's systemd package); the README tour
# and lock guard tests run curl (7.76+ for --fail-with-body)
testdeps:
	@command -v systemd-analyze >/dev/null || (apt-get update && apt-get install -y systemd)
	@command -v curl >/dev/null || (apt-get update && apt-get install -y curl)
	@command -v openssl >/dev/null || (apt-get update && apt-get install -y openssl)   # TLS tests make certificates
	@command -v ip >/dev/null || (apt-get update && apt-get install -y iproute2)      # protected-mode tests use a network namespace
	@command -v setpriv >/dev/null && command -v unshare >/dev/null || (apt-get update && apt-get install -y util-linux)
	@command -v haproxy >/dev/null || (apt-get update && apt-get install -y haproxy)  # scale-out tests run Debian's HAProxy (2.6)

test: setup testdeps
	$(PY) -m pytest -q -p no:cacheprovider tests

quick-bench: setup
	bash bench/quick.sh

bench: setup
	$(PY) bench/suite.py

clean:
	rm -rf build dist *.egg-info cdragon/*.so cdragon/*.c cdragon/.core-built $(INSTALLED)

# `make binary`: dist/cdragon, one executable with Python and every dependency inside
# (see packaging/README.md). PyInstaller is installed into .venv by this target only.
BINARY_DEPS := $(CORE_SO) $(VENV)/.pyinstaller $(wildcard cdragon/*.py) requirements.txt \
	packaging/cdragon.spec packaging/entry.py

binary: dist/cdragon

$(VENV)/.pyinstaller: $(VENV)/.deps packaging/requirements-binary.txt
	$(PY) -m pip install -q -r packaging/requirements-binary.txt
	touch $@

# built aside, then moved into place: a running or half-written dist/cdragon is never hit
dist/cdragon: $(BINARY_DEPS)
	rm -rf build/pyinstaller
	$(PY) -m PyInstaller --noconfirm --clean --log-level WARN \
	  --distpath build/pyinstaller/dist --workpath build/pyinstaller/work packaging/cdragon.spec
	mkdir -p dist
	mv -f build/pyinstaller/dist/cdragon $@
	@ls -l $@ && ./$@ version
