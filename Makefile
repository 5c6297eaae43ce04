# feedgen: `make demo` runs the demo end to end, `make test` runs the whole test suite.
# Both create .venv (Python 3.11+) and install feedgen with its dev extras first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install check-java check-javac lint bench clean

demo: install
	$(BIN)/feedgen demo

test: install check-javac
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

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf var .pytest_cache
