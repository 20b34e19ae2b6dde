# Cloud Dragon: `make run` serves on 127.0.0.1:8081 with data in ./cdragon-data,
# `make test` runs the whole suite. Both set everything up first (.venv at the repo root).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CORE_SRC := $(wildcard cdragon/_core.pyx cdragon/core/*.pyx cdragon/core/*.pxi cdragon/core/*.pxd)
CORE_SO  := cdragon/.core-built

.PHONY: run test testdeps setup bench quick-bench binary clean sysdeps

setup: $(CORE_SO)

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

run: setup
	$(PY) -m cdragon serve --listen 127.0.0.1:8081 --data-dir ./cdragon-data

# the packaging tests run systemd-analyze (in Debian's systemd package); the README tour
# and lock guard tests run curl (7.76+ for --fail-with-body)
testdeps:
	@command -v systemd-analyze >/dev/null || (apt-get update && apt-get install -y systemd)
	@command -v curl >/dev/null || (apt-get update && apt-get install -y curl)

test: setup testdeps
	$(PY) -m pytest -q -p no:cacheprovider tests

quick-bench: setup
	bash bench/quick.sh

bench: setup
	$(PY) bench/suite.py

clean:
	rm -rf build dist *.egg-info cdragon/*.so cdragon/*.c cdragon/.core-built

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
