"""User templates (generate.templates_dir): validated before any output, rendered, served."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from feedgen.core.paths import EXAMPLES_DIR
from tests.pipeline_support import (
    DAY1,
    clean_env,
    feedgen,
    feedgen_here,
    write_config,
    write_sample,
)

EXAMPLE = EXAMPLES_DIR / "user-template"
FEED = """\
feeds:
  - id: mine
    template: {template}
    where: {{field: stock, gt: 0}}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=120)


def project(tmp_path: Path, template: str = "my_item") -> Path:
    """A definitions folder using ``template``, the example templates, and a config naming them."""
    shutil.copytree(EXAMPLE / "templates", tmp_path / "templates")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "feeds.yaml").write_text(FEED.format(template=template), encoding="utf-8")
    write_config(tmp_path, "definitions: defs\ngenerate:\n  templates_dir: templates\n")
    return tmp_path


def test_validate_accepts_a_feed_using_a_user_template(tmp_path):
    done = cli("validate", "--config", "feedgen.yaml", cwd=project(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "templates: my_item 1" in done.stdout


def test_the_shipped_example_validates(tmp_path):
    done = cli("validate", "--config", str(EXAMPLE / "feedgen.yaml"), cwd=EXAMPLES_DIR.parent)
    assert done.returncode == 0, done.stderr


def test_unknown_template_suggests_the_closest_and_lists_built_in_and_user_names(tmp_path):
    root = project(tmp_path, template="my_itme")
    (root / "templates" / "partner_csv").mkdir()
    (root / "templates" / "partner_csv" / "item.csv.j2").write_text("{{ row([item.offer_id]) }}\n")
    done = cli("validate", "--config", "feedgen.yaml", cwd=root)
    assert done.returncode == 2
    [line] = [x for x in done.stderr.splitlines() if "unknown template" in x]
    assert "defs/feeds.yaml:3: feed 'mine' template: unknown template 'my_itme'" in line
    assert "did you mean 'my_item'?" in line
    assert "google_merchant_rss" in line and "my_item, partner_csv" in line


def test_without_templates_dir_a_user_template_name_says_how_to_add_one(tmp_path):
    root = project(tmp_path)
    write_config(root, "definitions: defs\n")
    done = cli("validate", "--config", "feedgen.yaml", cwd=root)
    assert done.returncode == 2
    assert "unknown template 'my_item'" in done.stderr and "generate.templates_dir" in done.stderr


BROKEN = {
    "syntax": ("item.xml.j2", "<offer>\n{% if item.title %}\n</offer>\n", "item.xml.j2:3", "Jinja syntax error"),
    "unsafe_attribute": ("item.xml.j2", "<offer>\n{{ item.__class__.__mro__ }}\n</offer>\n", "item.xml.j2:2",
                         "unsafe attribute '__mro__'"),
    "unsafe_via_attr_filter": ("header.xml.j2", "<offers>\n\n{{ title|attr('__class__') }}\n", "header.xml.j2:3",
                               "unsafe attribute '__class__'"),
    "mutation": ("item.xml.j2", "{{ item.images.append('x') }}<offer/>\n", "item.xml.j2:1", "call of .append()"),
    "header_fails": ("header.xml.j2", "<offers>\n{{ (title|length) // 0 }}\n", "header.xml.j2:2",
                     "fails to render: ZeroDivisionError"),
    "header_calls_an_item_name": ("header.xml.j2", "<offers>\n{{ reject('x') }}\n", "header.xml.j2:2",
                                  "unknown function 'reject'"),
    "missing_footer": ("footer.xml.j2", None, "footer.xml.j2:0", "has no footer.xml.j2"),
    "missing_item": ("item.xml.j2", None, "my_item:0", "has no item.xml.j2, item.csv.j2 or item.tsv.j2"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_user_template_is_an_exit_2_naming_the_file_and_line(tmp_path, case):
    name, text, where, message = BROKEN[case]
    root = project(tmp_path)
    path = root / "templates" / "my_item" / name
    if text is None:
        path.unlink()
    else:
        path.write_text(text, encoding="utf-8")
    done = cli("validate", "--config", "feedgen.yaml", cwd=root)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [x for x in done.stderr.splitlines() if message in x]
    assert where in line and "feed 'mine' template: template 'my_item'" in line, line


def test_run_with_a_broken_user_template_stops_before_writing_under_the_root(tmp_path):
    root = project(tmp_path)
    (root / "templates" / "my_item" / "item.xml.j2").write_text("{{ item.__dict__ }}\n", encoding="utf-8")
    data = tmp_path / "var"
    done = cli("run", "--config", "feedgen.yaml", "--root", str(data), "--as-of", DAY1, cwd=root)
    assert done.returncode == 2, done.stderr
    assert "item.xml.j2:1" in done.stderr and "unsafe attribute '__dict__'" in done.stderr
    assert not data.exists() or not any(data.iterdir())


PARTLY = """\
  - id: partly
    template: partly
    where: {field: offer_id, is_null: false}
"""


def test_feedgen_run_renders_a_user_template_holds_on_template_errors_and_serves_once_approved(spark, tmp_path):
    import json

    from feedgen.core.config import load_config
    from feedgen.fileserver.app import create_app

    root = project(tmp_path)
    # a second feed whose template fails on the offers with no stock (validate cannot see that)
    shutil.copytree(root / "templates" / "my_item", root / "templates" / "partly")
    (root / "templates" / "partly" / "item.xml.j2").write_text(
        '<offer id="{{ item.offer_id }}">\n<per_unit>{{ 100 // item.stock }}</per_unit></offer>\n', encoding="utf-8")
    with (root / "defs" / "feeds.yaml").open("a", encoding="utf-8") as feeds:
        feeds.write(PARTLY)
    data = tmp_path / "var"
    write_sample(data, variant=0, offers=40, customers=10)
    write_config(root, "definitions: defs\ngenerate:\n  templates_dir: templates\nserver:\n  public: [mine]\n")
    # in this process, on the suite's Spark session (a JVM start of its own adds nothing here)
    done = feedgen_here("run", "--config", str(root / "feedgen.yaml"), "--root", str(data), "--as-of", DAY1, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]

    [run_id] = [p.name for p in (data / "runs").iterdir()]
    record = json.loads((data / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "held"
    partly = record["definitions"]["partly"]
    failed = partly["excluded"]["template_error"]
    assert failed >= 1 and partly["items"] == partly["candidates"] - failed
    first = partly["template_error"]
    assert first["file"].endswith("templates/partly/item.xml.j2") and first["line"] == 2
    assert first["message"] == "ZeroDivisionError: integer division or modulo by zero"
    [breach] = record["gate"]["breaches"]
    assert breach["definition_id"] == "partly" and breach["metric"] == "template_error_rate"
    assert first["key"] in breach["sample_keys"]
    where = f"{first['file']}:2: ZeroDivisionError"
    assert any(where in w and f"failed on {failed} of" in w for w in record["warnings"]), record["warnings"]
    said = "".join((done.stdout + done.stderr).split())  # the console wraps long lines
    assert "partly/item.xml.j2:2:ZeroDivisionError" in said and f"failedon{failed}of" in said  # `feedgen run` says it
    shown = feedgen("runs", "show", run_id, "--config", str(root / "feedgen.yaml"), "--root", str(data), cwd=root)
    assert where in shown.stdout and "held: partly template_error_rate" in shown.stdout, shown.stdout

    approved = feedgen("runs", "approve", run_id, "--config", str(root / "feedgen.yaml"), "--root", str(data),
                       cwd=root)
    assert approved.returncode == 0, approved.stderr[-3000:]
    app = create_app(load_config(str(root / "feedgen.yaml"), root=str(data)))
    response = app.test_client().get("/feeds/mine")
    assert response.status_code == 200, response.data[:500]
    doc = etree.fromstring(response.data)
    assert doc.tag == "offers" and doc.get("feed") == "mine"
    offers = doc.findall("offer")
    assert offers, response.data[:500]
    for offer in offers:
        assert offer.get("id").startswith("o") and offer.findtext("url").startswith("http")
        assert offer.findtext("in_stock") == "yes"


# -- templates that fail on every item, or run away: refused by validate -----------------------

HOSTILE = {
    # name: (item.xml.j2, file:line, message, fix)
    "include_missing": ('<offer/>\n{% include "nothere.j2" %}\n', "item.xml.j2:2",
                        "include of 'nothere.j2': no such file", "create the file in the template folder"),
    "include_outside": ('<offer>\n{% include "../../secret.txt" %}</offer>\n', "item.xml.j2:2",
                        "include '../../secret.txt' is outside the template folder", "only use files of their own folder"),
    "import_absolute": ('{% import "/etc/passwd" as p %}<offer/>\n', "item.xml.j2:1",
                        "import '/etc/passwd' is outside the template folder", "only use files of their own folder"),
    "undefined_function": ("{{ item.nope.deeper }}<x>{{ nofunc() }}</x>\n", "item.xml.j2:1",
                           "unknown function 'nofunc'", "item.xml.j2 sees item, row, reject, warn, options"),
    "error_on_every_item": ("<x>\n{{ item.title.upper().nope() }}</x>\n", "item.xml.j2:2",
                            "fails on a sample offer (template_error): UndefinedError", "guard it with {% if %}"),
    "nested_range": ("<x>\n{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}</x>\n",
                     "item.xml.j2:2", "(template_limit): over the loop bound", "100,000 loop iterations"),
    "huge_string": ('<x>{{ "x" * 1000000000 }}</x>\n', "item.xml.j2:1",
                    "(template_limit): over the size bound: '*' would make a value of 1,000,000,000", "1,000,000 characters"),
    "recursive_macro": ("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}\n<x>{{ m(1) }}</x>\n", "item.xml.j2:1",
                        "(template_limit): over the recursion bound", "1 s"),
    "namespace_doubling": ('{% set ns = namespace(s="x") %}\n{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}'
                           "{% endfor %}<x>{{ ns.s|length }}</x>\n", "item.xml.j2:2",
                           "(template_limit): over the size bound", "1,000,000 characters"),
    "chained_filters": ('<x>\n{{ "x"|center(900000)|indent(900000) }}</x>\n', "item.xml.j2:2",
                        "over the size bound: indent would make", "1,000,000 characters"),
    "format_width": ('<x>\n{{ "%0999999999d"|format(1) ~ "{:>999999999}".format(1) }}</x>\n', "item.xml.j2:2",
                     "over the size bound: a % format width", "1,000,000 characters"),
    "string_method": ('<x>{{ item.title.ljust(999999999) }}</x>\n', "item.xml.j2:1",
                      "over the size bound: str.ljust", "1,000,000 characters"),
    "slow_item": ("{% set ns = namespace(n=0) %}<x>\n{% for i in range(300) %}{% for j in range(300) %}"
                  "{% set ns.n = ns.n + ((item.title * 30)|replace('S', 's')|length) %}{% endfor %}{% endfor %}</x>\n",
                  "item.xml.j2:", "(template_limit): over the", "1 s"),
    "macro_output_doubling": ('{% macro m(n) %}{{ "y" * 100000 }}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}'
                              "{% endmacro %}\n<x>{{ m(20)|length }}</x>\n", "item.xml.j2:1",
                              "over the size bound: the render wrote more than 1,000,000 characters", "1 s"),
}


def _two_gb() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[subprocess.CompletedProcess, float]:
    """One ``feedgen validate`` of a feed per hostile template, under a 2 GB address-space limit."""
    import time

    root = tmp_path_factory.mktemp("hostile")
    feeds = ["feeds:"]
    for case, (text, *_rest) in HOSTILE.items():
        folder = root / "templates" / case
        shutil.copytree(EXAMPLE / "templates" / "my_item", folder)
        (folder / "item.xml.j2").write_text(text, encoding="utf-8")
        feeds.append(f"  - id: {case.replace('_', '-')}\n    template: {case}\n    where: {{field: stock, gt: 0}}")
    (root / "defs").mkdir()
    (root / "defs" / "feeds.yaml").write_text("\n".join(feeds) + "\n", encoding="utf-8")
    write_config(root, "definitions: defs\ngenerate:\n  templates_dir: templates\n")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "validate", "--config", "feedgen.yaml"],
                          cwd=root, env=clean_env(), capture_output=True, text=True, timeout=120,
                          preexec_fn=_two_gb)
    return done, time.monotonic() - t0


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_validate_refuses_a_template_that_fails_on_every_item_or_runs_away(hostile, case):
    done, seconds = hostile
    _text, where, message, fix = HOSTILE[case]
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    # every template rendered once under the bounds: a few seconds for all of them, no GBs
    assert seconds < 60, seconds
    label = f"feed '{case.replace('_', '-')}' template: template '{case}'"
    lines = [x for x in done.stderr.splitlines() if label in x]
    assert len(lines) == 1, done.stderr[-3000:]
    assert f"{case}/{where}" in lines[0] and message in lines[0] and fix in lines[0], lines[0]


def test_a_template_failing_only_on_some_items_passes_validate(tmp_path):
    root = project(tmp_path)
    (root / "templates" / "my_item" / "item.xml.j2").write_text(
        '<offer id="{{ item.offer_id }}">{{ 1 // item.stock }}</offer>\n', encoding="utf-8")
    done = cli("validate", "--config", "feedgen.yaml", cwd=root)
    assert done.returncode == 0, done.stderr


def test_an_item_over_a_bound_is_left_out_with_template_limit_and_where(tmp_path):
    from feedgen.generator.render import get_renderer

    root = project(tmp_path)
    (root / "templates" / "my_item" / "item.xml.j2").write_text(
        "<offer>\n{% for i in range(item.stock) %}{{ i }}{% endfor %}</offer>\n", encoding="utf-8")
    renderer = get_renderer("my_item", {"case": "bounds"}, root / "templates")
    assert renderer.render({"offer_id": "o1", "stock": 3}).text == "<offer>\n012</offer>\n"
    result = renderer.render({"offer_id": "o2", "stock": 10**9})
    assert result.text is None and result.errors == ("template_limit",)
    assert result.detail["file"].endswith("my_item/item.xml.j2") and result.detail["line"] == 2
    assert "over the loop bound: range() of 1,000,000,000 elements" in result.detail["message"]


def test_a_template_error_holds_the_first_run(tmp_path):
    from feedgen.generator.gates import evaluate_definition

    stats = {"items": 0, "candidates": 40, "excluded": {"template_error": 40},
             "template_error": {"reason": "template_error", "file": "t/item.xml.j2", "line": 3,
                                "message": "ZeroDivisionError: integer division or modulo by zero", "key": "o1"}}
    metrics, breaches = evaluate_definition("mine", stats, None, None,
                                            {"enabled": True, "max_template_error_rate": 0.0})
    assert metrics == {"template_error_rate": 1.0}
    [breach] = breaches
    assert breach["metric"] == "template_error_rate" and breach["sample_keys"] == ["o1"]
    assert breach["detail"] == "t/item.xml.j2:3: ZeroDivisionError: integer division or modulo by zero"
    _, none = evaluate_definition("mine", stats, None, None, {"enabled": True, "max_template_error_rate": None})
    assert none == []
