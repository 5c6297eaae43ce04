"""Commands: validate (check every definition), explain (why an entity is in a definition or not)."""

from __future__ import annotations

from collections import Counter

import click

from feedgen.jobs.options import as_of_option, config_option, definitions_option, root_option


def _definitions_dir(config, definitions: str | None, directory: str | None = None) -> str:
    return directory or definitions or str(config.get("definitions"))


@click.command("validate")
@click.argument("directory", required=False)
@config_option
@root_option
@definitions_option
def validate(directory, config_path, root, definitions) -> None:
    """Check every feed and segment definition in DIRECTORY (default: --definitions / config).

    DIRECTORY ``registry`` checks the registry's published set. Exits 2 listing every problem
    (file:line, definition, path, what is wrong, the fix), or 0 with a summary.
    """
    from feedgen.core.config import load_config
    from feedgen.jobs.pinning import describe, load_source

    config = load_config(config_path, root=root, definitions=definitions)
    folder = _definitions_dir(config, definitions, directory)
    defset = load_source(config, folder)
    _check_token_ids(config, defset)
    click.echo(summary(defset, describe(config, folder)))


def _check_token_ids(config, defset) -> None:
    """A token (or public entry) for an id no definition has opens nothing: exit 2 naming it."""
    from feedgen.core.config_schema import unknown_definition_ids
    from feedgen.core.errors import ConfigError

    problems = unknown_definition_ids(config.get("server"), (d.id for d in defset))
    if problems:
        raise ConfigError("\n".join(f"{config.source_label}: {line}" for line in problems))


def summary(defset, folder: str) -> str:
    """Counts per kind and entity, per template and per export."""
    kinds = Counter((d.kind, d.entity) for d in defset)
    templates = Counter(d.template for d in defset.feeds)
    exports = Counter(e for d in defset.segments for e in d.exports)
    lines = [f"{folder}: {len(defset)} definitions OK"]
    lines += [f"  {n:>5} {kind}s of {entity}s" for (kind, entity), n in sorted(kinds.items())]
    if templates:
        lines.append("  templates: " + ", ".join(f"{t} {n}" for t, n in sorted(templates.items())))
    if exports:
        lines.append("  exports: " + ", ".join(f"{e} {n}" for e, n in sorted(exports.items())))
    expanded = sum(1 for d in defset if d.params)
    if expanded:
        lines.append(f"  {expanded} of them expanded by for_each")
    return "\n".join(lines)


@click.command("explain")
@click.argument("definition_id")
@click.argument("entity_key")
@config_option
@root_option
@definitions_option
@as_of_option
def explain(definition_id, entity_key, config_path, root, definitions, as_of) -> None:
    """Show DEFINITION_ID's predicate with each clause's value for ENTITY_KEY.

    Reads the latest good aggregate of the definition's entity under the data root.
    """
    from feedgen.aggregator.job import latest_aggregate
    from feedgen.core.config import load_config
    from feedgen.core.errors import BadInput
    from feedgen.core.runs import parse_as_of
    from feedgen.generator.explain import explain_entity, format_explanation
    from feedgen.jobs.pinning import load_source
    from feedgen.jobs.spark import spark_session

    config = load_config(config_path, root=root, definitions=definitions)
    defset = load_source(config, _definitions_dir(config, definitions))
    definition = defset.get(definition_id)
    moment = parse_as_of(as_of)
    found = latest_aggregate(config.root, definition.entity)
    if found is None:
        raise BadInput(f"{config.root}: no {definition.entity} aggregate yet; "
                       f"run 'feedgen aggregate --root {config.root}' first")
    run_id, path = found
    spark = spark_session(config["spark"])
    df = spark.read.parquet(str(path))
    result = explain_entity(df, definition, entity_key, moment, defset.segments_by_id())
    if result is None:
        raise BadInput(f"{definition.entity} {entity_key!r} is not in the aggregate {path} (run {run_id}); "
                       f"check the key (e.g. {'o00000001' if definition.entity == 'offer' else 'c0000001'})")
    click.echo(format_explanation(definition, entity_key, moment, result, source=f"aggregate run {run_id}"))


COMMANDS = [validate, explain]
