"""One root error for everything a user can get wrong or a run can hit."""

from __future__ import annotations


class FeedgenError(Exception):
    """Root of feedgen's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(FeedgenError):
    """Bad config, definitions, arguments or source schema: nothing was written. Exit 2."""

    exit_code = 2


class ConfigError(BadInput):
    """The config file or an environment override is wrong."""


class SourceSchemaError(BadInput):
    """A source lacks a required column or has one of an unusable type."""


class RunFailed(FeedgenError):
    """A run could not complete (too much quarantined data, a failed stage). Exit 1."""


class RunLocked(FeedgenError):
    """Another run holds the root's lock."""


class DefinitionError(BadInput):
    """Feed or segment definitions are wrong; ``problems`` holds every one found, in order."""

    def __init__(self, problems) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the definitions:\n{lines}")
