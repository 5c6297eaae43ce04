"""Names of the built-in templates and audience exports, and the entity each applies to.

The definitions validator checks ``template:`` and ``exports:`` against these; the
renderer (generator/render.py) implements them from templates/.
"""

from __future__ import annotations

from feedgen.generator.offer_spec import CHANNELS

FEED_TEMPLATES: dict[str, str] = {
    **{name: channel.fmt for name, channel in CHANNELS.items()},   # the offer channels
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
