"""A deterministic, realistic marketplace written as Parquet, about 1% of it dirty on purpose.

Dirt is placed by row position (row ``i`` with ``i % 100 == 37``) and its kind rotates,
so the counts are exact and recorded in ``_sample.json`` beside the data. A kind with
several values (hostile titles and names, non-numeric prices) rotates its value by
occurrence: the n-th row of that kind takes value ``n % len(values)``, so every value
occurs once the source has ``100 * kinds * values`` rows, and each value's count is
recorded too (``dirty_values``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 250_000
BASE_TIME = datetime(2026, 11, 1, tzinfo=UTC)

CATEGORIES = [
    "Electronics > Phones > Smartphones", "Electronics > Phones > Accessories",
    "Electronics > Computers > Laptops", "Electronics > Computers > Monitors",
    "Electronics > Audio > Headphones", "Electronics > TV > Televisions",
    "Home & Garden > Kitchen > Coffee Machines", "Home & Garden > Furniture > Chairs",
    "Home & Garden > Garden > Tools", "Home & Garden > Lighting > Lamps",
    "Fashion > Women > Dresses", "Fashion > Men > Shoes", "Fashion > Kids > Jackets",
    "Sports > Cycling > Bikes", "Sports > Fitness > Weights", "Sports > Running > Shoes",
    "Toys > Building Sets > Bricks", "Toys > Dolls > Accessories",
    "Books > Fiction > Crime", "Books > Science > Computing",
    "Beauty > Skin Care > Creams", "Automotive > Parts > Tyres",
]
BRANDS = {
    "Electronics": ["Samsung", "Apple", "Xiaomi", "Sony", "LG", "Lenovo", "Dell", "JBL", "NoName"],
    "Home & Garden": ["Philips", "DeLonghi", "IKEA", "Bosch", "Gardena", "Generic"],
    "Fashion": ["Nike", "Adidas", "Reserved", "Zara", "Generic"],
    "Sports": ["Kross", "Decathlon", "Puma", "Asics", "NoName"],
    "Toys": ["LEGO", "Mattel", "Hasbro", "Cobi"],
    "Books": ["Znak", "Helion", "Penguin", "O'Reilly"],
    "Beauty": ["Nivea", "L'Oréal", "Ziaja"],
    "Automotive": ["Michelin", "Bridgestone", "Dębica"],
}
NOUNS = ["Pro", "Max", "Lite", "Plus", "Mini", "Ultra", "Classic", "Eco", "Air", "One"]
COLORS = ["black", "white", "red", "blue", "green", "silver", "gold"]
FIRST = ["Anna", "Piotr", "Maria", "Jan", "Katarzyna", "Tomasz", "Zofia", "Łukasz", "Agnieszka",
         "Michał", "Ewa", "Paweł", "Julia", "Jakub", "Marta", "Omar", "Sofia", "Liam"]
LAST = ["Nowak", "Kowalski", "Wiśniewska", "Wójcik", "Kowalczyk", "Kamińska", "Lewandowski",
        "Zielińska", "Szymański", "Woźniak", "Dąbrowska", "Smith", "García"]
CITIES = [("Warszawa", "00-950"), ("Kraków", "30-001"), ("Poznań", "61-001"),
          ("Wrocław", "50-001"), ("Gdańsk", "80-001"), ("Łódź", "90-001")]
DOMAINS = ["gmail.com", "wp.pl", "onet.pl", "example.com", "googlemail.com", "interia.pl"]
STORES = [str(s) for s in range(101, 121)]
EVENT_TYPES = ["page_view", "search", "add_to_cart", "email_open", "email_click", "app_open"]
CAMPAIGNS = [
    # id, scope type, scope value, discount, start offset days, length days (relative to BASE_TIME)
    ("black-friday", "all", None, 20.0, 20, 10),
    ("cyber-monday", "category", "Electronics", 15.0, 25, 5),
    ("autumn-sale", "category", "Fashion", 30.0, -20, 40),
    ("garden-clearance", "category", "Home & Garden > Garden", 40.0, -60, 90),
    ("phones-week", "category", "Electronics > Phones", 10.0, -5, 30),
    ("lego-days", "brand", "LEGO", 25.0, -10, 30),
    ("sony-promo", "brand", "Sony", 12.0, -3, 14),
    ("seller-s00001-anniversary", "seller", "s00001", 5.0, -30, 60),
    ("summer-sale", "all", None, 15.0, -150, 60),
    ("books-month", "category", "Books", 10.0, -1, 31),
]
# Titles that must survive XML and CSV rendering intact (or safely escaped), by kind.
HOSTILE_TITLE_KINDS = {
    "markup": "Kabel USB-C & <Lightning> 2m ]]> \"best\" 'deal'",
    "control_characters": "Ekspres\x00 do\x07 kawy \x1b[31mred\x1b[0m\x0b\x0c",
    "emoji": "Słuchawki 🎧 bezprzewodowe 🔥🔥 nowe",
    "rtl_and_override_marks": "سماعات رأس لاسلكية — עברית RTL \u202etxet desrever\u202c",
    "csv_formula": "=HYPERLINK(\"http://evil.example\",\"click\") +cmd -2 @SUM(A1)",
    "cdata_and_script": "<![CDATA[ nested ]]> </title><script>alert(1)</script>",
    "line_breaks_and_noncharacters": "Tab\there, newline\nthere, CR\rend \ufffe\uffff",
}
HOSTILE_TITLES = list(HOSTILE_TITLE_KINDS.values())
# (first_name, last_name) that audience exports must hash or neutralise, by kind.
HOSTILE_NAME_KINDS = {
    "csv_formula_and_markup": ("=cmd|' /C calc'!A0 <b>&amp;", "O'Brien \"Bobby\" ]]> 🤖 עברית"),
    "control_characters": ("Jan\x00\x07\x1b[31m", "Kowal\tski\r\n\x0b"),
    "emoji_and_rtl": ("🤖 Zofia", "עברית \u202eikswoN\u202c"),
}
NON_NUMERIC_PRICES = {"comma_decimal": "12,99 zł", "letters": "abc", "empty": "", "nan": "NaN"}


def _dirty_kind(i: np.ndarray, kinds: list[str]) -> np.ndarray:
    """Kind of dirt for each row position ('' for clean rows)."""
    out = np.full(len(i), "", dtype=object)
    mask = (i % 100) == 37
    out[mask] = np.array(kinds, dtype=object)[(i[mask] // 100) % len(kinds)]
    return out


def _occurrence(i: int, kinds: list[str]) -> int:
    """Which occurrence of its kind dirty row ``i`` is (0 for the first row of that kind)."""
    return i // (100 * len(kinds))


def _pick(values: dict, i: int, kinds: list[str]) -> tuple:
    """The (name, value) that dirty row ``i`` takes from ``values``, rotating by occurrence."""
    name = list(values)[_occurrence(i, kinds) % len(values)]
    return name, values[name]


def _gtin13(rng: np.random.Generator, n: int) -> list[str]:
    digits = rng.integers(0, 10, size=(n, 12))
    weights = np.tile([1, 3], 6)
    check = (10 - (digits * weights).sum(axis=1) % 10) % 10
    return ["".join(map(str, row)) + str(c) for row, c in zip(digits.tolist(), check.tolist())]


def _ts(seconds_before_base: np.ndarray) -> pa.Array:
    base = int(BASE_TIME.timestamp())
    return pa.array((base - seconds_before_base.astype(np.int64)) * 1_000_000, type=pa.timestamp("us", tz="UTC"))


def _write(out: Path, name: str, tables: list[pa.Table]) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    for n, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{n:05d}.parquet", compression="zstd")


def _chunked(total: int, build: Callable[[int, int], pa.Table]) -> list[pa.Table]:
    return [build(start, min(start + CHUNK, total)) for start in range(0, max(total, 1), CHUNK) if start < total] or []


OFFER_DIRT = ["missing_offer_id", "negative_price", "non_numeric_price", "unknown_currency",
              "duplicate_offer_id", "dangling_seller_id", "hostile_title"]
CUSTOMER_DIRT = ["missing_customer_id", "duplicate_customer_id", "hostile_name", "bad_email"]
ORDER_DIRT = ["missing_customer_id", "dangling_customer_id", "negative_amount", "non_numeric_amount"]
EVENT_DIRT = ["missing_type", "dangling_customer_id"]
SELLER_DIRT = ["rating_out_of_range"]


VARIANTS = {
    0: "the base marketplace",
    1: "a day later: 2% of prices cut by 10%, 0.5% sold out, 0.3% of offers delisted",
    2: "a broken export: half of the offers lost their image_link",
}


def write_sample_data(out: str | Path, offers: int = 10_000, customers: int = 2_000, seed: int = 7,
                      progress: Callable[[str], None] | None = None, variant: int = 0) -> dict:
    """Write every source under ``out/<source>/part-*.parquet``; return the summary.

    ``variant`` 1 and 2 are the same marketplace changed (see VARIANTS), for showing deltas
    and a held run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    n_products = max(1, offers // 3)
    n_sellers = max(5, offers // 100)
    counts: dict[str, int] = {}
    dirt: dict[str, Counter] = {}

    def rng_for(source: str, chunk: int) -> np.random.Generator:
        return np.random.default_rng([seed, sum(map(ord, source)), chunk])

    # Products
    say("products")
    rng = rng_for("products", 0)
    cat_idx = rng.integers(0, len(CATEGORIES), n_products)
    prod_cat = [CATEGORIES[c] for c in cat_idx.tolist()]
    prod_brand = []
    for c, pick in zip(prod_cat, rng.integers(0, 1000, n_products).tolist()):
        options = BRANDS[c.split(" > ")[0]]
        prod_brand.append(options[pick % len(options)])
    prod_noun = rng.integers(0, len(NOUNS), n_products).tolist()
    prod_model = rng.integers(1, 99, n_products).tolist()
    prod_gtin = _gtin13(rng, n_products)
    has_gtin = rng.random(n_products) < 0.8
    prod_ids = [f"p{i:07d}" for i in range(n_products)]
    prod_names = [f"{b} {c.split(' > ')[-1].rstrip('s')} {NOUNS[n]} {m}" for b, c, n, m in zip(prod_brand, prod_cat, prod_noun, prod_model)]
    products = pa.table({
        "product_id": prod_ids, "name": prod_names, "brand": prod_brand, "category_path": prod_cat,
        "gtin": [g if h else None for g, h in zip(prod_gtin, has_gtin.tolist())],
    })
    _write(out, "products", [products])
    counts["products"] = n_products

    # Sellers
    say("sellers")
    rng = rng_for("sellers", 0)
    idx = np.arange(n_sellers)
    kinds = _dirty_kind(idx, SELLER_DIRT)
    rating = np.round(np.clip(5 - rng.exponential(0.6, n_sellers), 1.0, 5.0), 2)
    rating = np.where(kinds == "rating_out_of_range", 7.5, rating)
    sellers = pa.table({
        "seller_id": [f"s{i:05d}" for i in idx.tolist()],
        "name": [f"Shop {i}" for i in idx.tolist()],
        "rating": rating,
        "country": np.array(["PL", "PL", "PL", "CZ", "DE", "SK"], dtype=object)[rng.integers(0, 6, n_sellers)].tolist(),
        "status": np.where(rng.random(n_sellers) < 0.95, "active", "suspended").tolist(),
    })
    _write(out, "sellers", [sellers])
    counts["sellers"] = n_sellers
    dirt["sellers"] = Counter(k for k in kinds.tolist() if k)

    # Offers
    offer_dirt: Counter = Counter()
    title_kinds: Counter = Counter()
    price_kinds: Counter = Counter()

    def build_offers(start: int, stop: int) -> pa.Table:
        say(f"offers {start:,}-{stop:,}")
        r = rng_for("offers", start // CHUNK)
        n = stop - start
        i = np.arange(start, stop)
        kinds = _dirty_kind(i, OFFER_DIRT)
        offer_dirt.update(k for k in kinds.tolist() if k)
        pidx = r.integers(0, n_products, n)
        sidx = r.integers(0, n_sellers, n)
        price = np.round(np.exp(r.normal(4.5, 1.2, n)), 2).clip(0.99, 49_999)
        on_sale = r.random(n) < 0.2
        sale = np.round(price * r.uniform(0.6, 0.95, n), 2)
        stock = np.where(r.random(n) < 0.1, 0, r.integers(1, 500, n))
        cond = np.array(["new", "used", "refurbished"], dtype=object)[np.searchsorted([0.85, 0.95], r.random(n))]
        has_image = r.random(n) < 0.97
        has_mpn = r.random(n) < 0.5
        color = r.integers(0, len(COLORS), n)
        age = r.integers(0, 30 * 86400, n)
        currency = np.where(r.random(n) < 0.9, "PLN", "EUR").astype(object)
        ids = [f"o{k:08d}" for k in i.tolist()]
        sellers_col = [f"s{k:05d}" for k in sidx.tolist()]
        titles = []
        price_txt = [f"{p:.2f}" for p in price.tolist()]
        for j, (k, p) in enumerate(zip(kinds.tolist(), pidx.tolist())):
            titles.append(f"{prod_names[p]} {COLORS[color[j]]}")
            if k == "missing_offer_id":
                ids[j] = None
            elif k == "negative_price":
                price_txt[j] = f"-{price_txt[j]}"
            elif k == "non_numeric_price":
                name, price_txt[j] = _pick(NON_NUMERIC_PRICES, int(i[j]), OFFER_DIRT)
                price_kinds[name] += 1
            elif k == "unknown_currency":
                currency[j] = "XYZ"
            elif k == "duplicate_offer_id":
                ids[j] = f"o{int(i[j]) - 1:08d}"
                age[j] = 0  # the newer copy: it wins, the older one is superseded
            elif k == "dangling_seller_id":
                sellers_col[j] = f"s-missing-{int(i[j])}"
            elif k == "hostile_title":
                name, titles[j] = _pick(HOSTILE_TITLE_KINDS, int(i[j]), OFFER_DIRT)
                title_kinds[name] += 1
        image = [f"https://img.example.com/{k}.jpg" if h else None for k, h in zip(i.tolist(), has_image.tolist())]
        keep = np.ones(n, dtype=bool)
        if variant == 1:
            cut = (i % 50) == 3
            price_txt = [f"{float(p) * 0.9:.2f}" if c and k == "" else p for p, c, k in zip(price_txt, cut.tolist(), kinds.tolist())]
            stock = np.where((i % 200) == 5, 0, stock)
            keep = (i % 300) != 7
            age = np.where(cut, 0, age)
        elif variant == 2:
            image = [None if k % 2 == 0 else v for k, v in zip(i.tolist(), image)]
        table = pa.table({
            "offer_id": pa.array(ids, pa.string()),
            "product_id": [prod_ids[p] for p in pidx.tolist()],
            "seller_id": sellers_col,
            "title": titles,
            "description": [f"{t}. Fast shipping from Poland. Condition: {c}." for t, c in zip(titles, cond.tolist())],
            "category_path": [prod_cat[p] for p in pidx.tolist()],
            "price_amount": price_txt,
            "price_currency": currency.tolist(),
            "sale_price_amount": pa.array([f"{s:.2f}" if o else None for s, o in zip(sale.tolist(), on_sale.tolist())], pa.string()),
            "stock": pa.array(stock, pa.int32()),
            "condition": cond.tolist(),
            "brand": [prod_brand[p] for p in pidx.tolist()],
            "gtin": [prod_gtin[p] if has_gtin[p] else None for p in pidx.tolist()],
            "mpn": [f"MPN-{p:06d}" if m else None for p, m in zip(pidx.tolist(), has_mpn.tolist())],
            "link": [f"https://shop.example.com/offer/{k}" for k in i.tolist()],
            "image_link": image,
            "attributes": pa.array([[("color", COLORS[c])] for c in color.tolist()], pa.map_(pa.string(), pa.string())),
            "updated_at": _ts(age),
        })
        return table.filter(pa.array(keep))

    offer_tables = _chunked(offers, build_offers)
    _write(out, "offers", offer_tables)
    counts["offers"] = sum(t.num_rows for t in offer_tables)
    dirt["offers"] = offer_dirt

    # Campaigns
    say("campaigns")
    campaigns = pa.table({
        "campaign_id": [c[0] for c in CAMPAIGNS],
        "name": [c[0].replace("-", " ").title() for c in CAMPAIGNS],
        "scope_type": [c[1] for c in CAMPAIGNS],
        "scope_value": [c[2] for c in CAMPAIGNS],
        "discount_pct": [c[3] for c in CAMPAIGNS],
        "starts_at": pa.array([BASE_TIME + timedelta(days=c[4]) for c in CAMPAIGNS], pa.timestamp("us", tz="UTC")),
        "ends_at": pa.array([BASE_TIME + timedelta(days=c[4] + c[5]) for c in CAMPAIGNS], pa.timestamp("us", tz="UTC")),
    })
    _write(out, "campaigns", [campaigns])
    counts["campaigns"] = len(CAMPAIGNS)

    # Ratings: about one per offer, on products
    say("ratings")
    n_ratings = max(1, offers)

    def build_ratings(start: int, stop: int) -> pa.Table:
        r = rng_for("ratings", start // CHUNK)
        n = stop - start
        return pa.table({
            "product_id": [prod_ids[p] for p in r.integers(0, n_products, n).tolist()],
            "customer_id": [f"c{k:07d}" for k in r.integers(0, max(customers, 1), n).tolist()],
            "stars": pa.array(np.clip(np.round(r.normal(4.2, 0.9, n)), 1, 5).astype(np.int32)),
            "ts": _ts(r.integers(0, 365 * 86400, n)),
        })

    _write(out, "ratings", _chunked(n_ratings, build_ratings))
    counts["ratings"] = n_ratings

    # Customers
    cust_dirt: Counter = Counter()
    name_kinds: Counter = Counter()

    def build_customers(start: int, stop: int) -> pa.Table:
        say(f"customers {start:,}-{stop:,}")
        r = rng_for("customers", start // CHUNK)
        n = stop - start
        i = np.arange(start, stop)
        kinds = _dirty_kind(i, CUSTOMER_DIRT)
        cust_dirt.update(k for k in kinds.tolist() if k)
        fi = r.integers(0, len(FIRST), n).tolist()
        li = r.integers(0, len(LAST), n).tolist()
        di = r.integers(0, len(DOMAINS), n).tolist()
        ci = r.integers(0, len(CITIES), n).tolist()
        style = r.integers(0, 4, n).tolist()
        phone_num = r.integers(500_000_000, 899_999_999, n).tolist()
        ids = [f"c{k:07d}" for k in i.tolist()]
        first = [FIRST[k] for k in fi]
        last = [LAST[k] for k in li]
        emails, phones = [], []
        for j in range(n):
            local = f"{first[j]}.{last[j]}{int(i[j])}".lower()
            local = local.encode("ascii", "ignore").decode() or f"user{int(i[j])}"
            if style[j] == 1:
                local = local.title() + "+promo"
            email = f"{local}@{DOMAINS[di[j]]}"
            emails.append(f"  {email.upper()} " if style[j] == 2 else email)
            p = str(phone_num[j])
            phones.append([f"+48{p}", f"+48 {p[:3]} {p[3:6]} {p[6:]}", f"0048-{p}", f"({p[:3]}) {p[3:]}"][style[j]])
        for j, k in enumerate(kinds.tolist()):
            if k == "missing_customer_id":
                ids[j] = None
            elif k == "duplicate_customer_id":
                ids[j] = f"c{int(i[j]) - 1:07d}"
            elif k == "hostile_name":
                name, (first[j], last[j]) = _pick(HOSTILE_NAME_KINDS, int(i[j]), CUSTOMER_DIRT)
                name_kinds[name] += 1
            elif k == "bad_email":
                emails[j] = "not-an-email"
        signup = r.integers(30 * 86400, 3 * 365 * 86400, n)
        return pa.table({
            "customer_id": pa.array(ids, pa.string()),
            "email": emails, "phone": phones, "first_name": first, "last_name": last,
            "country": np.where(r.random(n) < 0.9, "PL", "CZ").tolist(),
            "city": [CITIES[k][0] for k in ci], "zip": [CITIES[k][1] for k in ci],
            "signup_at": _ts(signup),
            "consents": pa.array([{"email": bool(a), "sms": bool(b), "ads": bool(c)} for a, b, c in zip(
                (r.random(n) < 0.7).tolist(), (r.random(n) < 0.4).tolist(), (r.random(n) < 0.6).tolist())],
                pa.struct([("email", pa.bool_()), ("sms", pa.bool_()), ("ads", pa.bool_())])),
            "attributes": pa.array([[("loyalty_tier", ["bronze", "silver", "gold"][t])] for t in r.integers(0, 3, n).tolist()],
                                   pa.map_(pa.string(), pa.string())),
        })

    _write(out, "customers", _chunked(customers, build_customers))
    counts["customers"] = customers
    dirt["customers"] = cust_dirt

    # Orders (about 4 a customer) and events (about 8)
    def history(source: str, per_customer: float, kinds_list: list[str], counter: Counter,
                make: Callable[[np.random.Generator, int, list[str], np.ndarray, np.ndarray], dict]) -> list[pa.Table]:
        tables = []
        row = 0
        for start in range(0, customers, CHUNK):
            stop = min(start + CHUNK, customers)
            say(f"{source} for customers {start:,}-{stop:,}")
            r = rng_for(source, start // CHUNK)
            per = r.poisson(per_customer, stop - start)
            owners = np.repeat(np.arange(start, stop), per)
            n = len(owners)
            i = np.arange(row, row + n)
            row += n
            kinds = _dirty_kind(i, kinds_list)
            counter.update(k for k in kinds.tolist() if k)
            cust = [f"c{k:07d}" for k in owners.tolist()]
            for j in np.nonzero(kinds == "missing_customer_id")[0].tolist():
                cust[j] = None
            for j in np.nonzero(kinds == "dangling_customer_id")[0].tolist():
                cust[j] = f"c-missing-{int(i[j])}"
            tables.append(pa.table(make(r, n, cust, i, kinds)))
        return tables

    order_dirt: Counter = Counter()

    def make_orders(r, n, cust, i, kinds):
        amount = [f"{a:.2f}" for a in np.round(np.exp(r.normal(4.8, 0.9, n)), 2).tolist()]
        for j in np.nonzero(kinds == "negative_amount")[0].tolist():
            amount[j] = f"-{amount[j]}"
        for j in np.nonzero(kinds == "non_numeric_amount")[0].tolist():
            amount[j] = "n/a"
        return {
            "order_id": [f"ord{k:09d}" for k in i.tolist()],
            "customer_id": pa.array(cust, pa.string()),
            "store_id": [STORES[k] for k in r.integers(0, len(STORES), n).tolist()],
            "category": [CATEGORIES[k].split(" > ")[0] for k in r.integers(0, len(CATEGORIES), n).tolist()],
            "amount": amount, "currency": ["PLN"] * n,
            "ts": _ts(r.integers(0, 365 * 86400, n)),
        }

    orders_tables = history("orders", 4.0, ORDER_DIRT, order_dirt, make_orders)
    _write(out, "orders", orders_tables)
    counts["orders"] = sum(t.num_rows for t in orders_tables)
    dirt["orders"] = order_dirt

    event_dirt: Counter = Counter()

    def make_events(r, n, cust, i, kinds):
        types = [EVENT_TYPES[k] for k in r.integers(0, len(EVENT_TYPES), n).tolist()]
        for j in np.nonzero(kinds == "missing_type")[0].tolist():
            types[j] = None
        return {
            "event_id": [f"ev{k:010d}" for k in i.tolist()],
            "customer_id": pa.array(cust, pa.string()),
            "type": pa.array(types, pa.string()),
            "properties": pa.array([[("category", CATEGORIES[k].split(" > ")[0])] for k in r.integers(0, len(CATEGORIES), n).tolist()],
                                   pa.map_(pa.string(), pa.string())),
            "ts": _ts(r.integers(0, 90 * 86400, n)),
        }

    events_tables = history("events", 8.0, EVENT_DIRT, event_dirt, make_events)
    _write(out, "events", events_tables)
    counts["events"] = sum(t.num_rows for t in events_tables)
    dirt["events"] = event_dirt

    summary = {
        "seed": seed, "variant": variant, "base_time": BASE_TIME.isoformat(), "rows": counts,
        "dirty": {k: dict(sorted(v.items())) for k, v in dirt.items()},
        # how many rows of a many-valued kind took each value; they add up to "dirty"
        "dirty_values": {
            "offers": {"hostile_title": dict(sorted(title_kinds.items())),
                       "non_numeric_price": dict(sorted(price_kinds.items()))},
            "customers": {"hostile_name": dict(sorted(name_kinds.items()))},
        },
    }
    (out / "_sample.json").write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    return summary
