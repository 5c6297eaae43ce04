package feedgen.jvm;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF20;

/**
 * One offer rendered by a built-in offer template, in the JVM.
 *
 * The same rules as generator/render.py (_offer_fields, _prepare_google, _prepare_meta) and
 * the template's own item.*.j2, compiled by generator/jvm.py into a small program (text,
 * field, if-field, csv row). Python's string semantics are kept on purpose: lengths and
 * cuts count code points, whitespace is what str.isspace() says, cleaning removes what
 * xmlsafe.py removes. tests/test_render_jvm.py compares both renderers item by item.
 *
 * Returns struct(text, errors, warnings, payload, missing); text is null when an error
 * leaves the item out.
 */
public final class RenderOffer implements UDF20<String, String, String, String, String, String, String, String,
        Integer, Row, Row, Row, String, String, String, String, String, String, String, String, Row> {

    private static final long serialVersionUID = 1L;

    // ---------------------------------------------------------------- Python's text rules

    static boolean isSpace(int c) {
        return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F
                || c == 0x3000;
    }

    static boolean xmlChar(int c) {
        return c == 0x09 || c == 0x0A || c == 0x0D || (c >= 0x20 && c <= 0x7E) || (c >= 0xA0 && c <= 0xD7FF)
                || (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
    }

    static boolean textChar(int c) {
        return (c >= 0x20 && c <= 0x7E) || (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD)
                || (c >= 0x10000 && c <= 0x10FFFF);
    }

    static boolean lineBreak(int c) {
        return c == 0x09 || c == 0x0A || c == 0x0D || c == 0x85 || c == 0x2028 || c == 0x2029;
    }

    /** Whether no character of s is a surrogate or one xmlChar (or textChar) refuses: the common case. */
    static boolean plain(String s, boolean breaks) {
        int n = s.length();
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if ((char) (c - 0x20) < 0x5F) {
                continue;   // 0x20..0x7E
            }
            if ((c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD)) {
                continue;
            }
            if (breaks && (c == 0x09 || c == 0x0A || c == 0x0D)) {
                continue;
            }
            return false;
        }
        return true;
    }

    /** xmlsafe.xml_clean */
    static String xmlClean(String s) {
        if (plain(s, true)) {
            return s;
        }
        int n = s.length();
        int i = 0;
        while (i < n) {
            int c = s.codePointAt(i);
            if (!xmlChar(c)) {
                break;
            }
            i += Character.charCount(c);
        }
        if (i == n) {
            return s;
        }
        StringBuilder b = new StringBuilder(n);
        b.append(s, 0, i);
        while (i < n) {
            int c = s.codePointAt(i);
            if (xmlChar(c)) {
                b.appendCodePoint(c);
            }
            i += Character.charCount(c);
        }
        return b.toString();
    }

    /** xmlsafe.text_clean */
    static String textClean(String s) {
        if (plain(s, false)) {
            return s;
        }
        int n = s.length();
        boolean bad = false;
        for (int i = 0; i < n; ) {
            int c = s.codePointAt(i);
            if (!textChar(c)) {
                bad = true;
                break;
            }
            i += Character.charCount(c);
        }
        if (!bad) {
            return s;
        }
        StringBuilder b = new StringBuilder(n);
        for (int i = 0; i < n; ) {
            int c = s.codePointAt(i);
            if (lineBreak(c)) {
                while (i < n && lineBreak(s.codePointAt(i))) {
                    i += Character.charCount(s.codePointAt(i));
                }
                b.append(' ');
                continue;
            }
            if (textChar(c)) {
                b.appendCodePoint(c);
            }
            i += Character.charCount(c);
        }
        return b.toString();
    }

    static String strip(String s) {
        int a = 0;
        int z = s.length();
        while (a < z && isSpace(s.charAt(a))) {
            a++;
        }
        while (z > a && isSpace(s.charAt(z - 1))) {
            z--;
        }
        return s.substring(a, z);
    }

    static String rstrip(String s) {
        int z = s.length();
        while (z > 0 && isSpace(s.charAt(z - 1))) {
            z--;
        }
        return s.substring(0, z);
    }

    static boolean isBlank(String s) {
        return s == null || s.isEmpty() || strip(s).isEmpty();
    }

    /** " ".join(s.split()) */
    static String singleSpaced(String s) {
        int n0 = s.length();
        boolean ok = n0 > 0 && !isSpace(s.charAt(0)) && !isSpace(s.charAt(n0 - 1));
        for (int i = 1; ok && i < n0; i++) {
            char c = s.charAt(i);
            if (c == ' ' ? s.charAt(i - 1) == ' ' : (c <= 0x20 || c >= 0x85) && isSpace(c)) {
                ok = false;
            }
        }
        if (ok) {
            return s;   // already single-spaced
        }
        StringBuilder b = new StringBuilder(s.length());
        int n = s.length();
        int i = 0;
        while (i < n) {
            while (i < n && isSpace(s.charAt(i))) {
                i++;
            }
            int start = i;
            while (i < n && !isSpace(s.charAt(i))) {
                i++;
            }
            if (i > start) {
                if (b.length() > 0) {
                    b.append(' ');
                }
                b.append(s, start, i);
            }
        }
        return b.toString();
    }

    static int length(String s) {
        return s.codePointCount(0, s.length());
    }

    static String head(String s, int codePoints) {
        return s.substring(0, s.offsetByCodePoints(0, codePoints));
    }

    /** render._text: (value or null, cut) */
    static Object[] text(String value, int limit) {
        return value == null ? new Object[] {null, false} : cut(singleSpaced(xmlClean(value)), limit);
    }

    /** render._long_text */
    static Object[] longText(String value, int limit) {
        return value == null ? new Object[] {null, false} : cut(strip(xmlClean(value)), limit);
    }

    /** (t or null when empty, cut): t cut to ``limit`` code points with an ellipsis (no limit when 0) */
    static Object[] cut(String t, int limit) {
        if (t.isEmpty()) {
            return new Object[] {null, false};
        }
        if (limit > 0 && length(t) > limit) {
            return new Object[] {rstrip(head(t, limit - 1)) + "…", true};
        }
        return new Object[] {t, false};
    }

    /** render._url: ^https?://[^\s/$.?#][^\s]*$ with re.IGNORECASE, at most 2,000 characters */
    static String url(String value) {
        if (value == null) {
            return null;
        }
        String u = strip(xmlClean(value));
        if (length(u) > 2000) {
            return null;
        }
        int i = 0;
        String want = "http";
        for (int k = 0; k < 4; k++) {
            if (i >= u.length() || Character.toLowerCase(u.charAt(i)) != want.charAt(k)) {
                return null;
            }
            i++;
        }
        // re.IGNORECASE matches "s" with "S" and the long s (U+017F)
        if (i < u.length() && (u.charAt(i) == 's' || u.charAt(i) == 'S' || u.charAt(i) == '\u017F')) {
            i++;
        }
        if (!u.startsWith("://", i)) {
            return null;
        }
        i += 3;
        if (i >= u.length()) {
            return null;
        }
        int first = u.codePointAt(i);
        if (isSpace(first) || first == '/' || first == '$' || first == '.' || first == '?' || first == '#') {
            return null;
        }
        for (int k = i; k < u.length(); k++) {
            if (isSpace(u.charAt(k))) {
                return null;
            }
        }
        return u;
    }

    static boolean truthy(String s) {
        return s != null && !s.isEmpty();
    }

    // ---------------------------------------------------------------- vocabularies, money, codes

    static final Map<String, String> AVAILABILITY = new HashMap<>();
    static final Map<String, String> META_AVAILABILITY = new HashMap<>();
    static final Set<String> CONDITIONS = Set.of("new", "used", "refurbished");

    static {
        String[] pairs = {
            "in_stock", "in_stock", "instock", "in_stock", "in stock", "in_stock", "available", "in_stock",
            "out_of_stock", "out_of_stock", "outofstock", "out_of_stock", "out of stock", "out_of_stock",
            "sold_out", "out_of_stock", "preorder", "preorder", "pre_order", "preorder", "backorder", "backorder",
            "back_order", "backorder", "available for order", "backorder",
        };
        for (int i = 0; i < pairs.length; i += 2) {
            AVAILABILITY.put(pairs[i], pairs[i + 1]);
        }
        META_AVAILABILITY.put("in_stock", "in stock");
        META_AVAILABILITY.put("out_of_stock", "out of stock");
        META_AVAILABILITY.put("preorder", "preorder");
        META_AVAILABILITY.put("backorder", "available for order");
    }

    /** A money struct of the aggregate: amount and currency, either may be null. */
    static final class Cash {
        final BigDecimal amount;
        final String currency;

        Cash(BigDecimal amount, String currency) {
            this.amount = amount;
            this.currency = currency;
        }

        /** struct(amount, currency) as a UDF argument, null for a null struct. */
        static Cash of(Row row) {
            return row == null ? null : new Cash((BigDecimal) row.get(0), (String) row.get(1));
        }
    }

    /** render._money: {amount, currency} or null */
    static Object[] money(Cash m) {
        if (m == null || m.amount == null || m.currency == null) {
            return null;
        }
        BigDecimal amount = m.amount;
        String currency = strip(m.currency).toUpperCase(Locale.ROOT);
        if (amount.signum() <= 0 || currency.length() != 3) {
            return null;
        }
        for (int i = 0; i < 3; i++) {
            char ch = currency.charAt(i);
            if (ch < 'A' || ch > 'Z') {
                return null;
            }
        }
        return new Object[] {amount, currency};
    }

    static String formatMoney(Object[] m) {
        return ((BigDecimal) m[0]).setScale(2, RoundingMode.HALF_EVEN).toPlainString() + " " + m[1];
    }

    static boolean gtinOk(String g) {
        int n = g.length();
        if (n != 8 && n != 12 && n != 13 && n != 14) {
            return false;
        }
        for (int i = 0; i < n; i++) {
            if (g.charAt(i) < '0' || g.charAt(i) > '9') {
                return false;
            }
        }
        int total = 0;
        for (int i = 0; i < n - 1; i++) {
            int fromRight = n - 2 - i;
            total += (g.charAt(i) - '0') * (fromRight % 2 == 0 ? 3 : 1);
        }
        return (10 - total % 10) % 10 == g.charAt(n - 1) - '0';
    }

    static String removeSpaceAndDash(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (!isSpace(c) && c != '-') {
                b.append(c);
            }
        }
        return b.toString();
    }

    // ---------------------------------------------------------------- the prepared fields

    // the fields render.py's prepare step hands the item template, by index
    static final String[] FIELDS = {
        "availability", "brand", "condition", "description", "gtin", "id", "identifier_exists", "image_link",
        "link", "mpn", "price", "product_type", "sale_price", "title",
    };   // sorted: the payload's key order (json.dumps(sort_keys=True))
    static final int AVAILABILITY_F = 0;
    static final int BRAND = 1;
    static final int CONDITION = 2;
    static final int DESCRIPTION = 3;
    static final int GTIN = 4;
    static final int ID = 5;
    static final int IDENTIFIER_EXISTS = 6;
    static final int IMAGE_LINK = 7;
    static final int LINK = 8;
    static final int MPN = 9;
    static final int PRICE = 10;
    static final int PRODUCT_TYPE = 11;
    static final int SALE_PRICE = 12;
    static final int TITLE = 13;

    static int fieldIndex(String name) {
        int i = Arrays.binarySearch(FIELDS, name);
        return i < 0 ? -1 : i;   // a name the prepare step does not set reads as None
    }

    // ---------------------------------------------------------------- the template program

    static final int OP_TEXT = 0;
    static final int OP_VALUE = 1;
    static final int OP_IF = 2;
    static final int OP_END = 3;
    static final int OP_ROW = 4;

    /** An item template compiled by generator/jvm.py: ops over field indices, parsed once. */
    static final class Program implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final boolean autoescape;
        final String sep;
        final boolean neutralise;
        final int[] kinds;
        final String[] texts;
        final int[] fields;
        final int[][] rows;
        final String source;

        Program(String source) {
            this.source = source;
            String[] parts = source.split("\u0001", -1);
            autoescape = parts[0].equals("1");
            sep = parts[1];
            neutralise = parts[2].equals("1");
            int n = parts.length - 3;
            kinds = new int[n];
            texts = new String[n];
            fields = new int[n];
            rows = new int[n][];
            for (int k = 0; k < n; k++) {
                String op = parts[k + 3];
                String arg = op.substring(1);
                switch (op.charAt(0)) {
                    case 'T': kinds[k] = OP_TEXT; texts[k] = arg; break;
                    case 'V': kinds[k] = OP_VALUE; fields[k] = fieldIndex(arg); break;
                    case 'I': kinds[k] = OP_IF; fields[k] = fieldIndex(arg); break;
                    case 'E': kinds[k] = OP_END; break;
                    case 'R':
                        kinds[k] = OP_ROW;
                        String[] names = arg.split(",", -1);
                        rows[k] = new int[names.length];
                        for (int i = 0; i < names.length; i++) {
                            rows[k][i] = fieldIndex(names[i]);
                        }
                        break;
                    default: throw new IllegalArgumentException("unknown op " + op);
                }
            }
        }
    }

    /** markupsafe.escape: runs without a special character are copied whole. */
    static void escape(StringBuilder b, String s) {
        int n = s.length();
        int from = 0;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c > '>') {
                continue;   // '"', '&', '\'', '<' and '>' are all below
            }
            String entity;
            switch (c) {
                case '&': entity = "&amp;"; break;
                case '<': entity = "&lt;"; break;
                case '>': entity = "&gt;"; break;
                case '"': entity = "&#34;"; break;
                case '\'': entity = "&#39;"; break;
                default: continue;
            }
            b.append(s, from, i).append(entity);
            from = i + 1;
        }
        b.append(s, from, n);
    }

    /** xmlsafe._PLAIN_NUMBER.fullmatch: "-5", "+48601234567", "-3.50", ".5e-3". */
    static boolean plainNumber(String s, int from, int to) {
        int i = from;
        if (i < to && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            i++;
        }
        int digits = 0;
        while (i < to && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
            i++;
            digits++;
        }
        if (i < to && s.charAt(i) == '.') {
            i++;
            while (i < to && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
                digits++;
            }
        }
        if (digits == 0) {
            return false;
        }
        if (i < to && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            i++;
            if (i < to && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            int exp = 0;
            while (i < to && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                i++;
                exp++;
            }
            if (exp == 0) {
                return false;
            }
        }
        return i == to;
    }

    /** xmlsafe.neutralise_formula: a formula after leading spaces gets a "'", a plain number does not. */
    static String neutraliseFormula(String t) {
        int n = t.length();
        int i = 0;
        while (i < n && isSpace(t.charAt(i))) {
            i++;
        }
        if (i == n || "=+-@".indexOf(t.charAt(i)) < 0) {
            return t;
        }
        int end = n;
        while (end > i && isSpace(t.charAt(end - 1))) {
            end--;
        }
        return plainNumber(t, i, end) ? t : "'" + t;
    }

    static void cell(StringBuilder b, String value, String sep, boolean neutralise) {
        String t = textClean(value == null ? "" : value);
        if (neutralise && value != null) {
            t = neutraliseFormula(t);   // RenderOffer's fields are all text (render.py's _row_writer)
        }
        if (!sep.equals(",")) {
            b.append(t);
            return;
        }
        if (t.indexOf('"') >= 0) {
            b.append('"').append(t.replace("\"", "\"\"")).append('"');
        } else if (t.indexOf(',') >= 0 || t.indexOf('\n') >= 0 || t.indexOf('\r') >= 0 || t.startsWith(" ")
                || t.endsWith(" ")) {
            b.append('"').append(t).append('"');
        } else {
            b.append(t);
        }
    }

    static String get(String[] f, int i) {
        return i < 0 ? null : f[i];
    }

    static String render(Program p, String[] f) {
        StringBuilder b = new StringBuilder(1024);
        int skip = 0;   // depth of false ifs we are inside
        for (int k = 0; k < p.kinds.length; k++) {
            int kind = p.kinds[k];
            if (kind == OP_IF) {
                if (skip > 0 || !truthy(get(f, p.fields[k]))) {
                    skip++;
                }
                continue;
            }
            if (kind == OP_END) {
                if (skip > 0) {
                    skip--;
                }
                continue;
            }
            if (skip > 0) {
                continue;
            }
            if (kind == OP_TEXT) {
                b.append(p.texts[k]);
            } else if (kind == OP_VALUE) {
                String v = get(f, p.fields[k]);
                v = v == null ? "None" : v;
                if (p.autoescape) {
                    escape(b, v);
                } else {
                    b.append(v);
                }
            } else {
                StringBuilder row = new StringBuilder();
                int[] names = p.rows[k];
                for (int i = 0; i < names.length; i++) {
                    if (i > 0) {
                        row.append(p.sep);
                    }
                    cell(row, get(f, names[i]), p.sep, p.neutralise);
                }
                if (p.autoescape) {
                    escape(b, row.toString());
                } else {
                    b.append(row);
                }
            }
        }
        return b.toString();
    }

    // ---------------------------------------------------------------- payload JSON

    /** json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False) */
    static String json(String[] f, boolean google) {
        StringBuilder b = new StringBuilder(512);
        b.append('{');
        boolean first = true;
        for (int i = 0; i < FIELDS.length; i++) {
            if (i == IDENTIFIER_EXISTS && !google) {
                continue;   // the Meta prepare step does not set it
            }
            if (!first) {
                b.append(',');
            }
            first = false;
            jsonString(b, FIELDS[i]);
            b.append(':');
            if (f[i] == null) {
                b.append("null");
            } else {
                jsonString(b, f[i]);
            }
        }
        return b.append('}').toString();
    }

    static void jsonString(StringBuilder b, String s) {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                case '\b': b.append("\\b"); break;
                case '\f': b.append("\\f"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        b.append('"');
    }

    // ---------------------------------------------------------------- one offer

    static final String[] NONE = new String[0];

    /** What rendering one offer gives: text is null when errors[0] leaves it out. */
    static final class Result {
        final String text;
        final String[] errors;
        final String[] warnings;
        final String payload;
        final String[] missing;

        Result(String text, String[] errors, String[] warnings, String payload, String[] missing) {
            this.text = text;
            this.errors = errors;
            this.warnings = warnings;
            this.payload = payload;
            this.missing = missing;
        }
    }

    static String[] array(List<String> list) {
        return list.isEmpty() ? NONE : list.toArray(NONE);
    }

    /**
     * Render one offer. {@code price}, {@code salePrice} and {@code effectivePrice} are
     * struct(amount decimal, currency string) rows, null when the offer has none.
     */
    static Result renderOffer(Program p, boolean google, boolean withPayload, String offerId, String title,
                              String description, String link, String imageLink, String availabilityRaw,
                              Integer stock, Cash price, Cash salePrice, Cash effectivePrice, String conditionRaw,
                              String brandRaw, String gtinRaw, String mpnRaw, String categoryPath,
                              String productName, String productBrand, String productGtin) {
        int idMax = google ? 50 : 100;
        int titleMax = google ? 150 : 200;
        int descriptionMax = google ? 5000 : 9999;
        List<String> errors = new ArrayList<>(2);
        List<String> warnings = new ArrayList<>(2);
        String[] f = new String[FIELDS.length];

        String id = offerId == null ? "" : strip(xmlClean(offerId));
        if (id.isEmpty()) {
            errors.add("missing_id");
        } else if (length(id) > idMax) {
            errors.add("id_too_long");
        }
        f[ID] = id;

        Object[] t = text(title, titleMax);
        if (t[0] == null) {
            t = text(productName, titleMax);
        }
        String titleText = (String) t[0];
        if (titleText == null) {
            errors.add("missing_title");
        } else if ((Boolean) t[1]) {
            warnings.add("title_truncated");
        }
        f[TITLE] = titleText;

        Object[] d = longText(description, descriptionMax);
        String desc = (String) d[0];
        if (desc == null) {
            desc = titleText;
            warnings.add("description_missing");
        } else if ((Boolean) d[1]) {
            warnings.add("description_truncated");
        }
        f[DESCRIPTION] = desc;

        String l = url(link);
        if (l == null) {
            errors.add(truthy(link) ? "bad_link" : "missing_link");
        }
        f[LINK] = l;
        String img = url(imageLink);
        if (img == null) {
            errors.add(truthy(imageLink) ? "bad_image_link" : "missing_image_link");
        }
        f[IMAGE_LINK] = img;

        String availability = truthy(availabilityRaw)
                ? AVAILABILITY.get(strip(availabilityRaw).toLowerCase(Locale.ROOT)) : null;
        if (availability == null) {
            if (stock != null) {
                availability = stock > 0 ? "in_stock" : "out_of_stock";
                warnings.add("availability_from_stock");
            } else {
                errors.add("bad_availability");
            }
        }

        Object[] pm = money(price);
        String sale = null;
        if (pm == null) {
            Object amount = price == null ? null : price.amount;
            boolean zero = amount == null || ((BigDecimal) amount).signum() == 0;
            errors.add(zero ? "missing_price" : "bad_price");
        } else {
            f[PRICE] = formatMoney(pm);
            Object[] best = null;
            Object[] sellerSale = money(salePrice);
            for (Object[] cand : new Object[][] {money(effectivePrice), sellerSale}) {
                if (cand != null && cand[1].equals(pm[1]) && ((BigDecimal) cand[0]).compareTo((BigDecimal) pm[0]) < 0) {
                    if (best == null || ((BigDecimal) cand[0]).compareTo((BigDecimal) best[0]) < 0) {
                        best = cand;
                    }
                }
            }
            if (best == null && sellerSale != null) {
                warnings.add("sale_price_not_below_price");
            }
            sale = best == null ? null : formatMoney(best);
        }
        f[SALE_PRICE] = sale;

        String condition = truthy(conditionRaw) ? strip(conditionRaw).toLowerCase(Locale.ROOT) : null;
        if (condition != null && !CONDITIONS.contains(condition)) {
            warnings.add("unknown_condition");
            condition = null;
        }

        Object[] br = text(truthy(brandRaw) ? brandRaw : productBrand, 70);
        if ((Boolean) br[1]) {
            warnings.add("brand_truncated");
        }
        f[BRAND] = (String) br[0];
        String gtin = truthy(gtinRaw) ? gtinRaw : productGtin;
        if (gtin != null) {
            gtin = removeSpaceAndDash(gtin);
        }
        if (gtin != null && gtin.isEmpty()) {
            gtin = null;
        }
        if (gtin != null && !gtinOk(gtin)) {
            warnings.add("invalid_gtin");
            gtin = null;
        }
        f[GTIN] = gtin;
        Object[] mp = text(mpnRaw, 70);
        if ((Boolean) mp[1]) {
            warnings.add("mpn_truncated");
        }
        f[MPN] = (String) mp[0];
        f[PRODUCT_TYPE] = (String) text(categoryPath, 750)[0];

        if (google) {
            f[AVAILABILITY_F] = availability;
            f[CONDITION] = condition;
            f[IDENTIFIER_EXISTS] = gtin == null && mp[0] == null ? "no" : null;
        } else {
            f[AVAILABILITY_F] = META_AVAILABILITY.get(availability == null ? "" : availability);
            if (condition == null) {
                condition = "new";
                warnings.add("condition_missing");
            }
            f[CONDITION] = condition;
            if (br[0] == null && gtin == null && mp[0] == null) {
                errors.add("missing_brand_gtin_mpn");
            }
        }

        List<String> missing = new ArrayList<>(2);
        if (isBlank(offerId)) {
            missing.add("offer_id");
        }
        if (isBlank(title)) {
            missing.add("title");
        }
        if (isBlank(link)) {
            missing.add("link");
        }
        if (isBlank(imageLink)) {
            missing.add("image_link");
        }
        if (price == null || price.amount == null) {
            missing.add("price.amount");
        }
        if (price == null || isBlank(price.currency)) {
            missing.add("price.currency");
        }
        if (isBlank(availabilityRaw)) {
            missing.add("availability");
        }

        String out = errors.isEmpty() ? render(p, f) : null;
        return new Result(out, array(errors), array(warnings), withPayload ? json(f, google) : null, array(missing));
    }

    // ---------------------------------------------------------------- the UDF

    private transient Program last;

    @Override
    public Row call(String program, String flavour, String offerId, String title, String description, String link,
                    String imageLink, String availabilityRaw, Integer stock, Row price, Row salePrice,
                    Row effectivePrice, String conditionRaw, String brandRaw, String gtinRaw, String mpnRaw,
                    String categoryPath, String productName, String productBrand, String productGtin) {
        // the program is the same literal on every row: parse it once per task
        Program p = last;
        if (p == null || !p.source.equals(program)) {
            p = last = new Program(program);
        }
        // "google" or "meta", "+payload" when the caller keeps the snapshot payload
        Result r = renderOffer(p, flavour.startsWith("google"), flavour.endsWith("+payload"), offerId, title,
                description, link, imageLink, availabilityRaw, stock, Cash.of(price), Cash.of(salePrice), Cash.of(effectivePrice),
                conditionRaw, brandRaw, gtinRaw, mpnRaw, categoryPath, productName, productBrand, productGtin);
        return RowFactory.create(r.text, r.errors, r.warnings, r.payload, r.missing);
    }
}
