"""Definitions that validate must run: shared regex syntax, bounded for_each and YAML aliases."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgen.generator.regex import RegexRejected, check_pattern, java_pattern
from tests.pipeline_support import clean_env

# pattern → words the one-line message must name (the construct)
REJECTED = {
    r"(?P<sku>\d+)": "named group (?P<name>...) (Python-only)",
    r"(a)(?P=x)": "named backreference (?P=name) (Python-only)",
    r"abc\Z": r"\Z",
    r"(?#note)abc": "comment (?#...)",
    r"(a)?(?(1)b|c)": "conditional",
    r"a*+b": "possessive quantifier",
    r"(?>ab|a)c": "atomic group",
    r"\p{{Lu}}": r"\p{...}",  # {{ }}: a literal brace in definitions
    r"a\h": r"\h",
    r"a\Rb": r"\R",
    r"\Qa.b\E": r"\Q...\E",
    r"[a-z&&[^aeiou]]": "'&&' inside a class",
    r"[a[bc]]": "'[' inside a class",
    r"abc\z": r"\z",
    r"\Gabc": r"\G",
    r"(?i)abc": "inline flags",
    r"(?s:a.b)": "inline flags",
    r"\x{41}": r"\x{...}",
    r"a{,3}": "{,n}",
    r"\v": r"\v",
    r"(a+)+": "nested quantifier",
    r"(a*)*b": "nested quantifier",
    r"(x+x+)+y": "quantifiers that can take the same text one after the other",
    r"(\d*){10}x": "nested quantifier",
    r"a.*b.*c": "quantifiers that can take the same text one after the other",
    "a{99999999999999999999}": "repeat count {99999999999999999999} over the limit of 1000",
    r"(\w+\s?)*$": "nested quantifier",
    r"(a|aa)+": "alternatives that can start alike",
    r"(\d|\w)*x": "alternatives that can start alike",
}


def validate(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "validate", str(folder)], env=clean_env(),
                          capture_output=True, text=True, timeout=120, cwd=folder.parent)


def quoted(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


def test_validate_rejects_each_regex_outside_the_shared_syntax_naming_the_construct(tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    lines = ["feeds:"]
    for n, pattern in enumerate(REJECTED):
        lines += [f"  - id: feed-{n}", "    template: google_merchant_rss",
                  f"    where: {{all: [{{field: stock, gt: 0}}, {{field: title, matches: {quoted(pattern)}}}]}}"]
    lines += ["  - id: fine", "    template: google_merchant_rss",
              r"    where: {field: gtin, matches: '^\d{8}(\d{5})?$', ignore_case: true}"]
    (defs / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = validate(defs)
    assert done.returncode == 2
    problems = [x for x in done.stderr.splitlines() if "feeds.yaml:" in x]
    assert len(problems) == len(REJECTED), done.stderr
    for n, (pattern, construct) in enumerate(REJECTED.items()):
        [line] = [x for x in problems if f"feed 'feed-{n}' where.all[1].matches:" in x]
        assert f"feeds.yaml:{4 + 3 * n}:" in line and construct in line, (pattern, line)
        assert "; " in line.split(construct, 1)[1], line  # the fix follows
    assert not any("feed 'fine'" in x for x in problems)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs"]  # nothing written


def test_for_each_over_the_bound_is_an_exit_2_with_the_size_and_the_limit(tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    values = "[" + ", ".join(str(n) for n in range(200)) + "]"
    (defs / "feeds.yaml").write_text(
        "feeds:\n  - id: f-{a}-{b}-{c}\n    template: google_merchant_rss\n"
        f"    for_each: {{a: {values}, b: {values}, c: {values}}}\n"
        "    where: {field: seller_id, eq: 's-{a}-{b}-{c}'}\n", encoding="utf-8")
    start = time.monotonic()
    done = validate(defs)
    assert done.returncode == 2 and time.monotonic() - start < 30
    assert "feeds.yaml:4: feed 'f-{a}-{b}-{c}' for_each: for_each expands to 8,000,000 definitions " \
           "(200 × 200 × 200), over the limit of 10,000" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("shape", ["sequence", "merge"])
def test_yaml_alias_bombs_are_refused_quickly(tmp_path, shape):
    defs = tmp_path / "defs"
    defs.mkdir()
    if shape == "sequence":
        rows = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        rows += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    else:
        rows = ["m0: &m0 {x0: 1}"]
        rows += [f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}], x{n}: 1}}" for n in range(1, 40)]
    text = "\n".join(rows) + "\nfeeds:\n  - id: x\n    template: google_merchant_rss\n"
    (defs / "feeds.yaml").write_text(text, encoding="utf-8")
    start = time.monotonic()
    done = validate(defs)
    assert done.returncode == 2 and time.monotonic() - start < 30
    assert "feeds.yaml:1: YAML aliases (&name / *name) expand this file to more than 2,000,000 values" in done.stderr


# -- regexes: what validate accepts runs the same in Python and on Spark ---------------------

ATOMS = ["a", "b", "Z", "é", "ß", "İ", "1", "٣", " ", ".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"\b",
         r"\B", "^", "$", r"\A", "[a-c]", "[^a]", r"[\d_]", r"[\w-]", "[A-Z]", r"\.", r"\n", r"\x41",
         r"\u00e9", "}", "]", "(?=a)", "(?!b)", "(?<=a)", r"(?<!\d)", r"\1", r"\x0b", "-"]
QUANTS = ["", "", "*", "+", "?", "{2}", "{1,3}", "*?", "+?", "{0,}"]
TEXT = st.text(alphabet=list("abAB1٣ éÉßẞıİſKZz_-.²\n\r\x0b\x1c\xa0\u2028\x85ǅ"), max_size=8)


def _patterns(depth: int = 0):
    atom = st.sampled_from(ATOMS)
    if depth < 2:
        group = st.builds(lambda a, b, alt, cap: f"({'' if cap else '?:'}{a}{'|' + b if alt else ''})",
                          _patterns(depth + 1), _patterns(depth + 1), st.booleans(), st.booleans())
        atom = st.one_of(atom, group)
    piece = st.builds(lambda a, q: a + q, atom, st.sampled_from(QUANTS))
    return st.lists(piece, min_size=1, max_size=4).map("".join)


def _accepted(case) -> bool:
    pattern, _, ignore_case = case
    try:
        check_pattern(pattern, ignore_case)
    except (re.error, RegexRejected):
        return False
    return True


CASES = st.tuples(_patterns(), st.lists(TEXT, min_size=4, max_size=4), st.booleans()).filter(_accepted)
FIXED = [(r"^\d{13}$", ["5901234123457", "590123412345\n", "٣" * 13], False),
         ("^O'REILLY", ["o'reilly media", "O'Reilly"], True),
         ("straße", ["STRASSE", "STRAẞE", "Straße"], True),
         ("[A-Z]+", ["İ", "ǅ", "abc"], True),
         (r"a.b$", ["a\rb", "a\nb", "a\u2028b\n"], False),
         (r"\bcat\b", ["a cat!", "concat", "ßcat"], False),
         (r"\s", ["\x1c", "\u2028", "\x85", "x"], False)]


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases=st.lists(CASES, min_size=150, max_size=150))
def test_accepted_patterns_find_the_same_strings_in_python_and_spark(spark, cases):
    from pyspark.sql import functions as F

    rows, expected = [], []
    for pattern, texts, ignore_case in [*cases, *FIXED]:
        for text in texts:
            rows.append((len(rows), java_pattern(pattern, ignore_case), text))
            expected.append((pattern, text, ignore_case, bool(re.search(pattern, text, re.I if ignore_case else 0))))
    df = spark.createDataFrame(rows, "n int, p string, s string")
    got = {r["n"]: r["m"] for r in df.select("n", F.expr("s rlike p").alias("m")).collect()}
    differ = [(*expected[n], got[n]) for n in range(len(rows)) if got[n] != expected[n][3]]
    assert not differ, "pattern, text, ignore_case, python, spark:\n" + "\n".join(map(repr, differ[:10]))


# -- hostile definitions: exit 2 with file:line, the size and the limit, within seconds -------

CATASTROPHIC = [r"(\d*){10}x", r"x.*.*.*.*.*.*.*=", r"\w*\w*\w*\w*\w*\w*\w*\w*!", r"(a?){25}a{25}", r"(a+){10}c",
                r"(.*a){10}x", r"a.*.*b", r"\w*\w*", r"\d+\d+", r"a*a?a*", r"a.*\s*b", r"x.*foo.*bar", r"a.*b.*c",
                r"(a+)+", r"(a*)*b", r"(\w+\s?)*$", r"(a|aa)+", r"(a|a)(a|a)(a|a)", r"(?:ab)+a.*c", r"(?:a|b\.)+a+",
                r"\d+(?:\d)+", r"(?:a?a)+", r"(a|b+)+", r"(a+b?)+", "a?" * 20 + "a" * 20, r"a.*(?=.*x)y",
                r"(?:(?=.*a)x)+", r"(a*)\1*", r"(?:a{0,1000}){2}", r"\d+[\d.]+", r"(.+)+", r"(?:\d+,?)+"]
# common patterns that stay accepted: each quantifier ends where the next one cannot start
COMMON = [r"^\d+\.\d+$", r"foo.*bar", r"\s*-\s*", r"[A-Z]{2}\d{6}", r"(\d+\.){3}\d+", r"\d+(\.\d+)+",
          r"^[\w.+-]+@(?:[\w-]+\.)+[a-z]{2,}$", r"\d+(?:,\d{3})*(?:\.\d+)?", r"(?:https?|ftp)://\S+",
          r"^(?=.*\d)(?=.*[a-z]).{8,}$", r"(\w+)\s+\1", r"(\d)\1+", r"(?:\w+\s)+\w+", r"\b(?:red|blue)\b",
          r"(?:jpg|jpeg|png)$", r"a[^b]*b.*c", r"^\d{8}(\d{5})?$", r"\d{1,2}[./-]\d{1,2}[./-]\d{4}", r"^\s*$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_patterns_that_backtrack_catastrophically_are_refused(pattern):
    with pytest.raises(RegexRejected) as err:
        check_pattern(pattern)
    assert err.value.kind == "backtracking" and "catastrophic backtracking" in err.value.construct


@pytest.mark.parametrize("pattern", COMMON)
def test_common_patterns_stay_accepted(pattern):
    check_pattern(pattern)


@pytest.mark.parametrize(("pattern", "construct"), [
    ("(" * 300 + "a" + ")" * 300, "groups nested 300 deep (limit 32)"),
    ("a{99999999999999999999}", "repeat count {99999999999999999999} over the limit of 1000"),
    ("a{2,1001}", "repeat count {2,1001} over the limit of 1000"),
    ("a" * 1001, "a pattern of 1,001 characters (limit 1,000)"),
])
def test_patterns_over_a_limit_are_refused_before_any_engine_reads_them(pattern, construct):
    with pytest.raises(RegexRejected) as err:
        check_pattern(pattern)
    assert err.value.kind == "limit" and err.value.construct == construct
    java_pattern(pattern)  # an unvalidated definition is passed through, never a RecursionError


def _witnesses(pattern: str) -> list[str]:
    """One character per piece of the pattern that the piece matches: its literals, a member of
    each class (the pattern's own characters first)."""
    choices = sorted(set(pattern)) + sorted(set("a1 _.-xZé\t٣"))
    out: list[str] = []
    for part in re.findall(r"\\[dDwWsS]|\[(?:\\.|[^\]])*\]|\\.|.", pattern):
        if part in "()|?*+{}^$":
            continue
        try:
            rx = re.compile(part)
        except re.error:
            continue
        found = next((c for c in choices if rx.fullmatch(c)), None)
        if found is not None and found not in out:
            out.append(found)
    return out[:8] or ["a"]


def _adversarial(pattern: str, size: int = 5000) -> list[str]:
    w = _witnesses(pattern)
    runs = re.findall(r"[A-Za-z0-9]{2,}", pattern)
    pumps = [*w, *("".join(w[:n]) for n in range(2, len(w) + 1)), *runs,
             *(a + b for a in w[:4] for b in w[:4] if a != b)]
    return [(p * (size // len(p) + 1))[:size] + "!" for p in dict.fromkeys(pumps)]


def _slowest(pattern: str) -> tuple[float, str]:
    rx = re.compile(pattern)
    worst = (0.0, "")
    for text in _adversarial(pattern):
        start = time.process_time()
        rx.search(text)
        worst = max(worst, (time.process_time() - start, text[:20]))
    return worst


# One search from every position with one quantifier scanning the rest is quadratic: about
# 0.25 s of CPU for 5,000 characters in Python's re (e.g. \d+\.\d+ on "1" * 5000). What the
# rules refuse is cubic or worse: .*foo.*bar takes 17 s on "foo" * 1700, (a+){10}c minutes.
_BOUND = 1.5


# A search finds ".*X.*" exactly where it finds "X" (".*" may match nothing): a ".*" that
# opens or closes a top-level branch is dropped before the check and before Spark sees it.
SEARCH_FORMS = {r".*Samsung.*": "Samsung", r".*foo.*bar": "foo[^\n]{0,}bar", r".*.*.*.*.*.*.*=": "=",
                r".*\s*": r"[\s]{0,}", r".*?x.*?|.*y": "x|y", r".*": ""}


@pytest.mark.parametrize("pattern", SEARCH_FORMS)
def test_an_open_dot_star_is_dropped_so_contains_style_patterns_are_accepted(pattern):
    check_pattern(pattern)
    java = java_pattern(pattern)
    assert "[^\n]{0," not in java or pattern == r".*foo.*bar", java
    took, text = _slowest(_python_search_form(pattern))
    assert took < _BOUND, (pattern, text, took)


def _python_search_form(pattern: str) -> str:
    out = []
    for branch in pattern.split("|"):  # the SEARCH_FORMS cases have no "|" inside groups
        while (cut := next((c for c in (".*?", ".*") if branch.startswith(c)), None)):
            branch = branch[len(cut):]
        while (cut := next((c for c in (".*?", ".*") if branch.endswith(c)
                            and not branch.endswith("\\" + c)), None)):
            branch = branch[:-len(cut)]
        out.append(branch)
    return "|".join(out)


@pytest.mark.parametrize("pattern", [*COMMON, r"\w+(?:\s\w+)*\s\w+x", r"((\d+\.)+x)+y", "(?:" * 31 + "a" + ")+b" * 31])
def test_accepted_common_patterns_search_adversarial_text_in_bounded_time(pattern):
    check_pattern(pattern)
    took, text = _slowest(pattern)
    assert took < _BOUND, (pattern, text, took)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=CASES)
def test_accepted_patterns_search_adversarial_text_in_bounded_time(case):
    pattern, _, _ = case
    took, text = _slowest(pattern)
    assert took < _BOUND, (pattern, text, took)


def _where(n: int) -> str:
    return "{all: [" * n + "{field: stock, gt: 0}" + "]}" * n


HOSTILE = {
    # name: (file text or bytes, the words the one line must hold)
    "regex nested 300 deep": ("feeds:\n  - id: deep\n    template: google_merchant_rss\n"
                              f"    where: {{field: title, matches: '{'(' * 300}a{')' * 300}'}}\n",
                              ["feeds.yaml:4: feed 'deep' where.matches:", "groups nested 300 deep (limit 32)"]),
    "regex repeat count": ("feeds:\n  - id: count\n    template: google_merchant_rss\n"
                           "    where: {field: title, matches: 'a{99999999999999999999}'}\n",
                           ["feeds.yaml:4: feed 'count' where.matches:", "over the limit of 1000"]),
    "catastrophic regex": ("feeds:\n  - id: slow\n    template: google_merchant_rss\n"
                           "    where: {field: title, matches: '(\\d*){10}x'}\n",
                           ["feeds.yaml:4: feed 'slow' where.matches:", "nested quantifier", "could take minutes"]),
    "where 10,000 deep": ("feeds:\n  - id: deep\n    template: google_merchant_rss\n"
                          f"    where: {_where(10_000)}\n",
                          ["feeds.yaml:4: values nested more than 64 levels deep (limit 64)"]),
    "list 100,000 deep": ("feeds:\n  - id: deep\n    template: google_merchant_rss\n"
                          f"    x: {'[' * 100_000}{']' * 100_000}\n",
                          ["feeds.yaml:4: values nested more than 64 levels deep (limit 64)"]),
    "id of 200": ("feeds:\n  - id: " + "a" * 200 + "\n    template: google_merchant_rss\n",
                  ["feeds.yaml:2: feed 'aaaa", "id: id of 200 characters, over the limit of 128"]),
    "id of 1,002 after for_each": ("feeds:\n  - id: 'f-{x}'\n    template: google_merchant_rss\n"
                                   f"    for_each: {{x: [{'b' * 1000}]}}\n",
                                   ["feeds.yaml:2: feed 'f-bbb", "id of 1,002 characters after for_each, over the "
                                    "limit of 128"]),
    "long description": ("feeds:\n  - id: long\n    template: google_merchant_rss\n"
                         f"    description: {'x' * 70_000}\n",
                         ["feeds.yaml:4: a text value of 70,000 characters (limit 65,536)"]),
    "11 MB file": ("feeds:\n" + "# " + "x" * (11 * 1024 * 1024) + "\n",
                   ["feeds.yaml:1: a definitions file of 11,534,346 bytes (limit 10,485,760)"]),
    "100,010 definitions": ("feeds:\n" + "".join(
        f"  - id: f{i}-{{a}}\n    template: google_merchant_rss\n    for_each: {{a: [1,2,3,4,5,6,7,8,9,10]}}\n"
        for i in range(10_001)), ["feed 'f10000-{a}':", "more than 100,000 definitions in", "(after for_each)"]),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_definitions_exit_2_with_the_size_and_the_limit_in_seconds(tmp_path, case):
    text, words = HOSTILE[case]
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(text, encoding="utf-8")
    start = time.monotonic()
    done = validate(defs)
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if "feeds.yaml:" in x]
    assert all(w in line for w in words), line[:500]
    assert len(line) < 400, line  # one readable line, not the pattern or the value again
    assert took < 20, took  # about a second of work; the rest is the interpreter starting
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs"]  # nothing written
