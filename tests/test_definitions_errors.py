"""Every validation problem names file:line, the definition, the path, what is wrong and the fix."""

from __future__ import annotations

import pytest

from feedgen.core.errors import DefinitionError
from feedgen.generator.definitions import load_definitions


def problems(tmp_path, text: str, name: str = "feeds.yaml") -> list[str]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as err:
        load_definitions(tmp_path)
    assert err.value.exit_code == 2
    return [str(p) for p in err.value.problems]


def feed(where: str, extra: str = "") -> str:
    return f"feeds:\n  - id: google-pl\n    template: google_merchant_rss\n    where:\n{where}{extra}"


def test_unknown_field_with_did_you_mean(tmp_path):
    text = feed("      all:\n        - {field: stock, gt: 0}\n        - {field: brand, eq: Sony}\n"
                "        - {field: prise.amount, gt: 10}\n")
    assert problems(tmp_path, text) == [
        f"{tmp_path}/feeds.yaml:8: feed 'google-pl' where.all[2].field: unknown field 'prise'; did you mean 'price.amount'?"]


def test_operator_not_valid_for_the_type(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: campaign_ids, eq: black-friday}\n"))
    assert msg.endswith("feeds.yaml:5: feed 'google-pl' where.eq: operator 'eq' is not valid for 'campaign_ids' "
                        "(list of string); use contains: VALUE to test membership")


def test_operator_on_a_struct_names_its_fields(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: price, gt: 10}\n"))
    assert "operator 'gt' is not valid for 'price' (struct); use one of its fields: price.amount, price.currency" in msg


def test_value_of_the_wrong_type(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: stock, gt: many}\n"))
    assert msg.endswith("feeds.yaml:5: feed 'google-pl' where.gt: wrong value type: 'stock' is number, "
                        "got text 'many'; write a number")


def test_yaml_booleans_for_text_fields_say_to_quote(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: seller.country, eq: NO}\n"))
    assert "wrong value type: 'seller.country' is string, got boolean false; quote it: \"no\"" in msg


def test_bad_duration(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: updated_at, within_last: 30 days}\n"))
    assert msg.endswith("feeds.yaml:5: feed 'google-pl' where.within_last: bad duration '30 days'; "
                        "write a whole number and a unit (s m h d w), e.g. 30d, 12h or 2w")


def test_bad_regex(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: title, matches: \"(unclosed\"}\n"))
    assert "feeds.yaml:5: feed 'google-pl' where.matches: bad regex '(unclosed': missing ), unterminated subpattern" in msg
    assert msg.endswith("fix the pattern (escape special characters like . ( [ with a backslash)")


def test_empty_in_list(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: brand, in: []}\n"))
    assert msg.endswith("feeds.yaml:5: feed 'google-pl' where.in: empty in list; "
                        "list at least one value, or remove the clause (in: [] would match nothing)")


def test_unknown_template(tmp_path):
    text = "feeds:\n  - id: google-pl\n    template: google_merchant\n"
    assert problems(tmp_path, text) == [
        f"{tmp_path}/feeds.yaml:3: feed 'google-pl' template: unknown template 'google_merchant'; "
        "did you mean 'google_merchant_rss'?"]


def test_unknown_export(tmp_path):
    text = "segments:\n  - id: vip\n    exports: [ids_csv, meta_audience]\n"
    assert problems(tmp_path, text) == [
        f"{tmp_path}/feeds.yaml:3: segment 'vip' exports[1]: unknown export 'meta_audience'; "
        "did you mean 'meta_custom_audience'?"]


def test_duplicate_ids_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text("segments:\n  - id: vip\n", encoding="utf-8")
    [msg] = problems(tmp_path, "feeds:\n  - {id: vip, template: google_merchant_rss}\n", "b.yaml")
    assert msg == (f"{tmp_path}/b.yaml:2: feed 'vip' id: duplicate id 'vip', also defined at {tmp_path}/a.yaml:2; "
                   "give each feed and segment its own id")


def test_in_segment_cycle(tmp_path):
    text = ("segments:\n  - {id: a, where: {in_segment: b}}\n  - {id: b, where: {all: [{in_segment: c}]}}\n"
            "  - {id: c, where: {not: {in_segment: a}}}\n  - {id: d, where: {in_segment: a}}\n")
    assert problems(tmp_path, text) == [
        f"{tmp_path}/feeds.yaml:2: segment 'a' where: in_segment cycle: a → b → c → a; remove one of these in_segment references"]


def test_unknown_segment_reference(tmp_path):
    [msg] = problems(tmp_path, "segments:\n  - {id: a, where: {in_segment: inactive}}\n  - {id: inactive-30d}\n")
    assert msg.endswith("feeds.yaml:2: segment 'a' where.in_segment: unknown segment 'inactive'; did you mean 'inactive-30d'?")


def test_unexpanded_placeholder(tmp_path):
    text = "segments:\n  - id: store-{store_id}\n    for_each: {store_id: [101]}\n    where: {field: city, eq: \"{city}\"}\n"
    assert problems(tmp_path, text) == [
        f"{tmp_path}/feeds.yaml:4: segment 'store-{{store_id}}' where.eq: unexpanded placeholder {{city}} in '{{city}}'; "
        "add city to for_each, or write {{city}} for a literal {city}"]


def test_unknown_key_in_a_definition(tmp_path):
    [msg] = problems(tmp_path, "feeds:\n  - id: x\n    template: google_merchant_rss\n    pick_one: product_id\n")
    assert msg.endswith("feeds.yaml:4: feed 'x' pick_one: unknown key 'pick_one'; did you mean 'pick_one_per'?")


def test_unknown_operator(tmp_path):
    [msg] = problems(tmp_path, feed("      {field: stock, greater_than: 0}\n"))
    assert "where.greater_than: unknown operator 'greater_than'" in msg


def test_history_errors(tmp_path):
    text = ("segments:\n  - id: s\n    where:\n      any:\n        - {history: order, count: {gte: 1}}\n"
            "        - {history: orders, sum: {field: store_id, gte: 1}}\n        - {history: campaigns, within_last: 3d, exists: true}\n")
    msgs = problems(tmp_path, text)
    assert any("feeds.yaml:5: segment 's' where.any[0].history: unknown field 'order'; did you mean 'orders'?" in m for m in msgs)
    assert any("where.any[1].sum.field: sum of 'store_id' (string) is not possible" in m for m in msgs)


def test_every_problem_is_reported_in_one_pass(tmp_path):
    (tmp_path / "broken.yml").write_text("feeds: [\n", encoding="utf-8")
    text = ("feeds:\n  - id: a\n    template: nope\n    where: {field: prise, gt: 1}\n"
            "  - id: B_bad\n    template: google_merchant_rss\n    where: {all: [{field: brand, in: []}, {field: stock, gt: x}]}\n")
    msgs = problems(tmp_path, text)
    assert len(msgs) == 6, msgs
    assert "broken.yml:2: malformed YAML" in msgs[0]
    for part in ("unknown template 'nope'", "unknown field 'prise'", "bad id 'B_bad'", "empty in list", "wrong value type"):
        assert any(part in m for m in msgs), part
