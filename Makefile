# farmsync: two entry points, both work from a fresh clone on a fresh Debian machine.
#   make demo   install everything, start a 3-node local lab farm, rotate it, prove it, stop it
#   make test   install what the tests need and run lint, types and the whole suite

PYTHON ?= python3
APT_PACKAGES := openssh-server openssh-client mono-runtime mono-mcs libmono-system-web4.0-cil
STAMP := .make

.PHONY: test demo deps apt pip lint typecheck unit bench clean

# apt: install the Debian packages the real test servers need, only when one is missing.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

pip:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'

deps: apt pip

lint:
	$(PYTHON) -m ruff check agent tests bench
	$(PYTHON) -m mypy

unit:
	$(PYTHON) -m pytest -n 2 --dist loadgroup -q -p no:benchmark

test: deps lint unit

demo: deps
	$(PYTHON) -m farmsync.lab.demo

bench: deps
	$(PYTHON) bench/run.py

clean:
	rm -rf .lab build dist .pytest_cache .mypy_cache .ruff_cache
