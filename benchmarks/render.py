"""Rendering speed: items rendered per second by each built-in template, on one core.

    .venv/bin/python benchmarks/render.py [--small]

Prints, per template, the time to render N items, renders/s, and ratios measured in the
same run against two floors: the template's own Python *prepare* step alone (validation
and cleaning, no Jinja) and a bare f-string of the same fields (no validation at all).
Also times gzip + write_part of the rendered bytes, the other per-item cost.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from feedgen.generator.parts import part_name, write_part
from feedgen.generator.render import BUILTINS, get_renderer


def offers(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    brands = ["Acme", "Zeta", "Nova", "Orbit", None]
    out = []
    for i in range(n):
        price = Decimal(rng.randint(100, 500_000)) / 100
        out.append({
            "offer_id": f"off-{i:08d}", "product_id": f"p-{i % 50_000}", "seller_id": f"s-{i % 900}",
            "title": f"{rng.choice(brands) or 'Generic'} Phone {i % 977} 128 GB & case <new>",
            "description": "Fast shipping from Poland. Condition: new. " * rng.randint(1, 6),
            "category": {"path": "Electronics > Phones > Smartphones",
                         "levels": ["Electronics", "Phones", "Smartphones"], "top": "Electronics"},
            "price": {"amount": price, "currency": "PLN"},
            "sale_price": {"amount": price * Decimal("0.9"), "currency": "PLN"} if i % 7 == 0 else None,
            "effective_price": {"amount": price, "currency": "PLN"},
            "stock": rng.randint(0, 20), "availability": "in_stock" if i % 10 else "out_of_stock",
            "condition": "new", "brand": rng.choice(brands),
            "gtin": "5901234123457" if i % 3 else None, "mpn": f"MPN-{i}" if i % 2 else None,
            "link": f"https://shop.example.com/offer/{i}?ref=feed&x=1",
            "image_link": f"https://img.example.com/{i}.jpg" if i % 50 else None,
            "attributes": {"color": "black"}, "seller": {"seller_id": "s", "name": "S", "rating": 4.5},
            "product": {"product_id": "p", "name": "Phone", "brand": None, "gtin": None},
            "campaign_ids": [], "rating": {"average": 4.1, "count": 12},
        })
    return out


def customers(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [{
        "customer_id": f"c-{i:08d}", "email": f" User.{i}+tag@{rng.choice(['gmail.com', 'wp.pl'])} ",
        "phone": f"+48 {rng.randint(500, 899)} {rng.randint(100, 999)} {rng.randint(100, 999)}",
        "first_name": "Jan", "last_name": "Kowalski", "country": "PL", "city": "Kraków",
        "zip": "31-042",
    } for i in range(n)]


def _time(fn) -> float:
    # CPU seconds of this process: the machine is shared, wall time would measure the others
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="10k items instead of 100k")
    args = parser.parse_args()
    n = 10_000 if args.small else 100_000
    data = {"offer": offers(n), "customer": customers(n)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n:,} items per template, one process; load average {load:.1f} on "
          f"{os.cpu_count()} cores (times are this process's CPU seconds)\n")
    print(f"{'template':24} {'cpu s':>9} {'renders/s':>10} {'kept':>7} "
          f"{'x prepare':>10} {'x f-string':>11}")
    generic = {"fields": ["offer_id", "title", "price.amount", "price.currency", "brand", "link"]}
    rendered: dict[str, list[str]] = {}
    for name, spec in BUILTINS.items():
        options = generic if name.startswith("generic") else None
        renderer = get_renderer(name, options)
        items = data[renderer.entity]
        renderer.render(items[0])  # warm the template
        out: list = []  # only the texts are kept, as an executor writing a part would

        def run(r=renderer, it=items, o=out) -> None:
            for i in it:
                text = r.render(i).text
                if text is not None:
                    o.append(text)

        t_render = _time(run)
        t_prepare = _time(lambda s=spec, it=items: [s.prepare(i, {}, [], []) for i in it])
        key = "offer_id" if renderer.entity == "offer" else "customer_id"
        t_floor = _time(lambda it=items, k=key: [f"<item>{i[k]}|{i.get('title')}|{i.get('link')}"
                                                 f"|{i.get('email')}</item>\n" for i in it])
        kept = out
        rendered[name] = kept
        print(f"{name:24} {t_render:9.2f} {n / t_render:10,.0f} {len(kept):7,} "
              f"{t_render / max(t_prepare, 1e-9):10.1f} {t_render / max(t_floor, 1e-9):11.1f}")

    raw = "".join(rendered["google_merchant_rss"]).encode()
    with tempfile.TemporaryDirectory() as tmp:
        t_gzip = _time(lambda: write_part(Path(tmp), part_name(0, "xml"), raw, n))
    t_google = _time(lambda: [get_renderer("google_merchant_rss").render(i) for i in data["offer"]])
    print(f"\ngzip + write_part of the Google output ({len(raw) / 1e6:.1f} MB raw): {t_gzip:.2f} s "
          f"({len(raw) / 1e6 / t_gzip:.0f} MB/s); render/gzip time ratio "
          f"{t_google / t_gzip:.1f}")


if __name__ == "__main__":
    main()
