# feedgen: `make demo` runs the demo end to end, `make test` runs the whole test suite.
# Both create .venv (Python 3.11+) and install feedgen with its dev extras first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Debian packages the tests run for real, as package:binary (one word each; add more here)
DEBIAN_PACKAGES := nginx-light:/usr/sbin/nginx postgresql:/usr/bin/pg_ctlcluster chromium:/usr/bin/chromium

.PHONY: demo test install check-java check-javac check-debian lint bench clean

demo: install
	$(BIN)/feedgen demo

test: install check-javac check-debian
	$(BIN)/python -m pytest

install: check-java $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "feedgen needs Python 3.11 or newer; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check-java:
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2; exit}'); \
	major=$${v%%.*}; [ "$$major" = "1" ] && major=$$(echo $$v | cut -d. -f2); \
	if [ -z "$$v" ]; then echo "feedgen needs Java 17+ for Spark and none was found: apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME)"; exit 1; fi; \
	if [ "$$major" -lt 17 ] 2>/dev/null; then echo "feedgen needs Java 17+ for Spark, found Java $$v: apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME)"; exit 1; fi

check-javac:
	@command -v javac >/dev/null || [ -x "$$JAVA_HOME/bin/javac" ] || { echo "the tests need javac (a JDK 17+) to build feedgen's JVM renderer: apt-get install -y openjdk-17-jdk-headless (or set JAVA_HOME to a JDK)"; exit 1; }

# Installs what is missing when run as root (apt-get update only if the install fails);
# otherwise says in one line what to install and stops.
check-debian:
	@missing=""; for entry in $(DEBIAN_PACKAGES); do \
	  [ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "the tests need Debian packages:$$missing; install them: sudo apt-get install -y$$missing"; exit 1; fi; \
	echo "installing Debian packages:$$missing"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing || \
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing; }

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf var .pytest_cache
