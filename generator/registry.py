"""Names of the built-in templates and audience exports, and the entity each applies to.

The definitions validator checks ``template:`` and ``exports:`` against these; the
renderer (generator/render.py) implements them from templates/.
"""

from __future__ import annotations

FEED_TEMPLATES: dict[str, str] = {
    "google_merchant_rss": "xml",
    "meta_catalog_xml": "xml",
    "meta_catalog_csv": "csv",
    "generic_csv": "csv",
    "generic_tsv": "tsv",
}

AUDIENCE_EXPORTS: dict[str, str] = {
    "google_customer_match": "csv",
    "meta_custom_audience": "csv",
    "ids_csv": "csv",
}

TEMPLATE_ENTITY: dict[str, str] = {
    **{name: "offer" for name in FEED_TEMPLATES},
    **{name: "customer" for name in AUDIENCE_EXPORTS},
}
