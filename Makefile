# farmsync: two entry points, both work from a fresh clone on a stock Debian/Ubuntu machine.
#   make demo   install everything, start a 3-node local lab farm, rotate it, prove it, stop it
#   make test   install what the tests need and run lint, types and the whole suite
#
# Python packages go into a virtual environment in ./.venv (never into the system Python:
# Debian 12+, Ubuntu 24.04+ refuse that, PEP 668). Everything below runs from that venv.
# PYTHON is only the interpreter that creates it.

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
APT_PACKAGES := openssh-server openssh-client mono-runtime mono-mcs libmono-system-web4.0-cil
STAMP := $(VENV)/.farmsync-installed

.PHONY: test demo deps apt pip venv lint typecheck unit fast bench clean

# Debian packages are installed only when one is missing (root, or through sudo).
define apt_install
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(1) >/dev/null
endef

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing (apt):$$missing"; $(call apt_install,$$missing); fi

# The venv. Debian's python3 ships without ensurepip until python3-venv is installed.
$(VPY):
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  pkg=python3-venv; \
	  ver=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "installing (apt): $$pkg python$$ver-venv (Debian's python3 has no venv without it)"; \
	  $(call apt_install,$$pkg python$$ver-venv); \
	fi
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)
	@echo "installed farmsync and its test tools into $(VENV)/"

pip: $(STAMP)

deps: apt pip

lint: pip
	$(VPY) -m ruff check agent tests bench
	$(VPY) -m ruff format --check agent tests bench
	$(VPY) -m mypy

unit: pip
	$(VPY) -m pytest -n 2 --dist loadgroup -q -p no:benchmark

# A developer's quick loop: everything but the lab and fault suites.
fast: pip
	$(VPY) -m pytest -n 2 --dist loadgroup -q -p no:benchmark -m "not slow"

test: deps lint unit

demo: deps
	$(VPY) -m farmsync.lab.demo
	@echo ""
	@echo "farmsync is installed in $(VENV)/: run it as $(VENV)/bin/farmsync ..."
	@echo "or activate the environment first: . $(VENV)/bin/activate && farmsync --help"

bench: deps
	$(VPY) bench/run.py

clean:
	rm -rf .lab build dist .pytest_cache .mypy_cache .ruff_cache $(VENV)
