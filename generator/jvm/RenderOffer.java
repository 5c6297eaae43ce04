package feedgen.jvm;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF4;
import org.apache.spark.sql.types.StructType;

/**
 * One offer rendered by a built-in offer template, in the JVM.
 *
 * The rules are generator/offer_spec.py's, read at run time as JSON (``Flavour``: the inputs
 * by name, the fields with their cleaners, limits, vocabularies and codes), and the
 * template's own item.*.j2, compiled by generator/jvm.py into a small program (text,
 * field, if-field, csv row) over the flavour's field names. The cleaners are the code that
 * render.py's ``_clean_*`` functions are in Python. Python's string semantics are kept on
 * purpose: lengths and cuts count code points, whitespace is what str.isspace() says,
 * cleaning removes what xmlsafe.py removes. tests/test_render_jvm.py compares both
 * renderers item by item; tests/test_offer_spec.py holds both to golden vectors.
 *
 * As a UDF: (program, flavour JSON, payload?, struct of the inputs, read by field name) →
 * struct(text, errors, warnings, payload, missing); text is null when an error leaves the
 * item out.
 */
public final class RenderOffer implements UDF4<String, String, Boolean, Row, Row> {

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

    /** render._url: ^https?://[^\s/$.?#][^\s]*$ with re.IGNORECASE, at most ``limit`` characters (0: any) */
    static String url(String value, int limit) {
        if (value == null) {
            return null;
        }
        String u = strip(xmlClean(value));
        if (limit > 0 && length(u) > limit) {
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

    // ---------------------------------------------------------------- the spec

    static final ObjectMapper JSON = new ObjectMapper();
    static final int STRING = 0;
    static final int INT = 1;
    static final int MONEY = 2;
    static final List<String> TYPES = List.of("string", "int", "money");
    static final List<String> CLEANERS = List.of("id", "text", "long_text", "url", "choice", "money", "sale_price",
            "gtin", "coalesce", "flag");
    static final int C_ID = 0;
    static final int C_TEXT = 1;
    static final int C_LONG_TEXT = 2;
    static final int C_URL = 3;
    static final int C_CHOICE = 4;
    static final int C_MONEY = 5;
    static final int C_SALE_PRICE = 6;
    static final int C_GTIN = 7;
    static final int C_COALESCE = 8;
    static final int C_FLAG = 9;

    static String str(JsonNode n, String key) {
        JsonNode v = n.get(key);
        return v == null || v.isNull() ? null : v.asText();
    }

    /** A spec handed over from Python as JSON; ``what`` names it in the error. */
    static JsonNode readSpec(String json, String what) {
        try {
            return JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(what + " is not JSON: " + e.getOriginalMessage(), e);
        }
    }

    static int[] ints(JsonNode n, String key) {
        JsonNode v = n.get(key);
        int[] out = new int[v == null ? 0 : v.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = v.get(i).asInt();
        }
        return out;
    }

    /** A JSON object of strings (null values kept), or null. */
    static Map<String, String> strings(JsonNode n, String key) {
        JsonNode v = n.get(key);
        if (v == null || v.isNull()) {
            return null;
        }
        Map<String, String> out = new HashMap<>();
        for (Map.Entry<String, JsonNode> e : v.properties()) {
            out.put(e.getKey(), e.getValue().isNull() ? null : e.getValue().asText());
        }
        return out;
    }

    static int index(List<String> names, String name, String what) {
        int i = names.indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException("unknown " + what + " '" + name + "'; known: " + names);
        }
        return i;
    }

    /** One field of a flavour, resolved: offer_spec.Rule. */
    static final class Rule implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final String name;
        final int clean;
        final int[] sources;
        final int limit;
        final String missing;
        final String bad;
        final String tooLong;
        final String cut;
        final String invalid;
        final String refused;
        final int fallback;
        final String fallbackWarning;
        final Map<String, String> aliases;
        final Map<String, String> vocab;   // ours -> theirs (null: left out); a value not listed is refused
        final String defaultValue;
        final String defaultWarning;
        final int[] of;
        final String value;
        final Set<String> currencies;
        final String idChars;

        Rule(JsonNode n) {
            name = str(n, "name");
            clean = index(CLEANERS, str(n, "clean"), "cleaner");
            sources = ints(n, "sources");
            limit = n.path("limit").asInt(0);
            missing = str(n, "missing");
            bad = str(n, "bad");
            tooLong = str(n, "too_long");
            cut = str(n, "cut");
            invalid = str(n, "invalid");
            refused = str(n, "refused");
            fallback = n.path("fallback").asInt(-1);
            fallbackWarning = str(n, "fallback_warning");
            Map<String, String> a = strings(n, "aliases");
            aliases = a == null ? Map.of() : a;
            vocab = strings(n, "vocab");
            defaultValue = str(n, "default");
            defaultWarning = str(n, "default_warning");
            of = ints(n, "of");
            value = str(n, "value");
            JsonNode c = n.get("currencies");
            if (c == null || c.isNull()) {
                currencies = null;
            } else {
                currencies = new HashSet<>();
                c.forEach(x -> currencies.add(x.asText()));
            }
            idChars = str(n, "id_chars");
        }
    }

    /** A flavour as offer_spec.flavour_json writes it: its inputs, its fields' rules, its checks. */
    static final class Flavour implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final String source;
        final String name;
        final String[] inputs;
        final int[] types;
        final Rule[] rules;
        final List<String> names;
        final int[] payload;
        final int[][] anyOf;
        final String[] anyOfError;
        final String[] requiredName;
        final int[] requiredInput;
        final int[] requiredPart;   // 0 the value, 1 its amount, 2 its currency
        final boolean amountOnly;

        Flavour(String json) {
            source = json;
            JsonNode spec = readSpec(json, "the flavour");
            name = str(spec, "name");
            JsonNode in = spec.get("inputs");
            inputs = new String[in.size()];
            types = new int[in.size()];
            for (int i = 0; i < inputs.length; i++) {
                inputs[i] = str(in.get(i), "name");
                types[i] = index(TYPES, str(in.get(i), "type"), "input type");
            }
            JsonNode fs = spec.get("fields");
            rules = new Rule[fs.size()];
            String[] ns = new String[rules.length];
            for (int k = 0; k < rules.length; k++) {
                rules[k] = new Rule(fs.get(k));
                ns[k] = rules[k].name;
            }
            names = List.of(ns);
            payload = ints(spec, "payload");
            JsonNode any = spec.get("require_any");
            anyOf = new int[any.size()][];
            anyOfError = new String[any.size()];
            for (int i = 0; i < anyOf.length; i++) {
                anyOf[i] = ints(any.get(i), "fields");
                anyOfError[i] = str(any.get(i), "error");
            }
            JsonNode req = spec.get("required");
            requiredName = new String[req.size()];
            requiredInput = new int[req.size()];
            requiredPart = new int[req.size()];
            for (int i = 0; i < requiredName.length; i++) {
                requiredName[i] = str(req.get(i), "name");
                requiredInput[i] = req.get(i).get("input").asInt();
                requiredPart[i] = List.of("", "amount", "currency").indexOf(str(req.get(i), "part"));
            }
            amountOnly = "amount".equals(str(spec, "money"));
        }

        /** The index of field ``field``; a name the flavour does not set is an error (never "None"). */
        int field(String field) {
            int i = names.indexOf(field);
            if (i < 0) {
                throw new IllegalArgumentException("the item template uses '" + field + "', which flavour '" + name
                        + "' does not set; it sets " + names + " (generator/offer_spec.py)");
            }
            return i;
        }
    }

    /** A money struct of the aggregate: amount and currency, either may be null. */
    static final class Cash {
        final BigDecimal amount;
        final String currency;

        Cash(BigDecimal amount, String currency) {
            this.amount = amount;
            this.currency = currency;
        }

        /** A struct with amount and currency (found by name) as a UDF argument, null for a null struct. */
        static Cash of(Row row) {
            return row == null ? null : new Cash(row.getAs("amount"), row.getAs("currency"));
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

    /** "15.00 PLN", or "15.00" for a flavour whose prices are amounts only */
    static String formatMoney(Object[] m, boolean amountOnly) {
        String amount = ((BigDecimal) m[0]).setScale(2, RoundingMode.HALF_EVEN).toPlainString();
        return amountOnly ? amount : amount + " " + m[1];
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

    // ---------------------------------------------------------------- the template program

    static final int OP_TEXT = 0;
    static final int OP_VALUE = 1;
    static final int OP_IF = 2;
    static final int OP_END = 3;
    static final int OP_ROW = 4;

    /** An item template compiled by generator/jvm.py: ops over the indices of a flavour's fields, parsed once. */
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
        final Flavour flavour;

        Program(String source, Flavour flavour) {
            this.source = source;
            this.flavour = flavour;
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
                    case 'V': kinds[k] = OP_VALUE; fields[k] = flavour.field(arg); break;
                    case 'I': kinds[k] = OP_IF; fields[k] = flavour.field(arg); break;
                    case 'E': kinds[k] = OP_END; break;
                    case 'R':
                        kinds[k] = OP_ROW;
                        String[] names = arg.split(",", -1);
                        rows[k] = new int[names.length];
                        for (int i = 0; i < names.length; i++) {
                            rows[k][i] = flavour.field(names[i]);
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

    static String render(Program p, String[] f) {
        StringBuilder b = new StringBuilder(1024);
        int skip = 0;   // depth of false ifs we are inside
        for (int k = 0; k < p.kinds.length; k++) {
            int kind = p.kinds[k];
            if (kind == OP_IF) {
                if (skip > 0 || !truthy(f[p.fields[k]])) {
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
                String v = f[p.fields[k]];
                v = v == null ? "" : v;   // render.py's finalize: a field without a value writes nothing
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
                    cell(row, f[names[i]], p.sep, p.neutralise);
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
    static String json(Flavour fl, String[] f) {
        StringBuilder b = new StringBuilder(512);
        b.append('{');
        for (int i = 0; i < fl.payload.length; i++) {
            int k = fl.payload[i];
            if (i > 0) {
                b.append(',');
            }
            jsonString(b, fl.rules[k].name);
            b.append(':');
            if (f[k] == null) {
                b.append("null");
            } else {
                jsonString(b, f[k]);
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

    static void add(List<String> codes, String code) {
        if (code != null) {
            codes.add(code);
        }
    }

    /** Render one offer: ``in`` holds the flavour's inputs (String, Integer, Cash), in its order. */
    static Result renderOffer(Program p, Flavour fl, boolean withPayload, Object[] in) {
        List<String> errors = new ArrayList<>(2);
        List<String> warnings = new ArrayList<>(2);
        Rule[] rules = fl.rules;
        String[] f = new String[rules.length];
        for (int k = 0; k < rules.length; k++) {
            Rule r = rules[k];
            String v;
            switch (r.clean) {
                case C_ID: v = cleanId(r, in, errors); break;
                case C_TEXT: v = cleanText(r, in, f, errors, warnings, false); break;
                case C_LONG_TEXT: v = cleanText(r, in, f, errors, warnings, true); break;
                case C_URL: v = cleanUrl(r, in, errors); break;
                case C_CHOICE: v = cleanChoice(r, fl, in, errors, warnings); break;
                case C_MONEY: v = cleanMoney(r, fl, in, errors); break;
                case C_SALE_PRICE: v = cleanSalePrice(r, fl, in, warnings); break;
                case C_GTIN: v = cleanGtin(r, in, warnings); break;
                case C_COALESCE: v = coalesce(r, f); break;
                default: v = flag(r, f); break;
            }
            if (v != null && r.vocab != null) {
                if (r.vocab.containsKey(v)) {
                    v = r.vocab.get(v);
                } else {
                    add(errors, r.refused);
                    v = null;
                }
            }
            if (v == null && r.defaultValue != null) {
                v = r.defaultValue;
                add(warnings, r.defaultWarning);
            }
            f[k] = v;
        }
        for (int a = 0; a < fl.anyOf.length; a++) {
            boolean any = false;
            for (int k : fl.anyOf[a]) {
                any |= truthy(f[k]);
            }
            if (!any) {
                errors.add(fl.anyOfError[a]);
            }
        }
        String out = errors.isEmpty() ? render(p, f) : null;
        return new Result(out, array(errors), array(warnings), withPayload ? json(fl, f) : null, missing(fl, in));
    }

    /** generate._missing: the required aggregate paths that are null or blank. */
    static String[] missing(Flavour fl, Object[] in) {
        List<String> out = new ArrayList<>(2);
        for (int i = 0; i < fl.requiredName.length; i++) {
            Object v = in[fl.requiredInput[i]];
            int part = fl.requiredPart[i];
            boolean blank;
            if (part == 0) {
                blank = v == null || v instanceof String && isBlank((String) v);
            } else {
                Cash m = (Cash) v;
                blank = m == null || (part == 1 ? m.amount == null : isBlank(m.currency));
            }
            if (blank) {
                out.add(fl.requiredName[i]);
            }
        }
        return array(out);
    }

    /** No source had a value: an earlier field's, or the field is missing (render._none). */
    static String none(Rule r, String[] f, List<String> errors, List<String> warnings) {
        if (r.fallback >= 0) {
            add(warnings, r.fallbackWarning);
            return f[r.fallback];
        }
        add(errors, r.missing);
        return null;
    }

    static String cleanId(Rule r, Object[] in, List<String> errors) {
        String raw = (String) in[r.sources[0]];
        String id = raw == null ? "" : strip(xmlClean(raw));
        if (id.isEmpty()) {
            add(errors, r.missing);
        } else if (r.limit > 0 && length(id) > r.limit) {
            add(errors, r.tooLong);
        } else if (r.idChars != null && !id.codePoints().allMatch(c -> r.idChars.indexOf(c) >= 0)) {
            add(errors, r.refused);
        }
        return id;
    }

    static String cleanText(Rule r, Object[] in, String[] f, List<String> errors, List<String> warnings,
                            boolean lines) {
        for (int s : r.sources) {
            String raw = (String) in[s];
            Object[] t = lines ? longText(raw, r.limit) : text(raw, r.limit);
            if (t[0] != null) {
                if ((Boolean) t[1]) {
                    add(warnings, r.cut);
                }
                return (String) t[0];
            }
        }
        return none(r, f, errors, warnings);
    }

    static String cleanUrl(Rule r, Object[] in, List<String> errors) {
        boolean given = false;
        for (int s : r.sources) {
            String raw = (String) in[s];
            given |= truthy(raw);
            String u = url(raw, r.limit);
            if (u != null) {
                return u;
            }
        }
        add(errors, given ? r.bad : r.missing);
        return null;
    }

    static String cleanChoice(Rule r, Flavour fl, Object[] in, List<String> errors, List<String> warnings) {
        for (int s : r.sources) {
            if (fl.types[s] == INT) {
                // the stock says what no source did (availability)
                Integer stock = (Integer) in[s];
                if (stock != null) {
                    add(warnings, r.fallbackWarning);
                    return stock > 0 ? "in_stock" : "out_of_stock";
                }
                continue;
            }
            String raw = (String) in[s];
            if (truthy(raw)) {
                String v = r.aliases.get(strip(raw).toLowerCase(Locale.ROOT));
                if (v != null) {
                    return v;
                }
                if (r.invalid != null) {
                    warnings.add(r.invalid);
                    return null;
                }
            }
        }
        add(errors, r.missing);
        return null;
    }

    static String cleanMoney(Rule r, Flavour fl, Object[] in, List<String> errors) {
        Cash raw = (Cash) in[r.sources[0]];
        Object[] m = money(raw);
        if (m == null) {
            boolean amount = raw != null && raw.amount != null && raw.amount.signum() != 0;
            add(errors, amount ? r.bad : r.missing);
            return null;
        }
        if (r.currencies != null && !r.currencies.contains((String) m[1])) {
            add(errors, r.refused);
            return null;
        }
        return formatMoney(m, fl.amountOnly);
    }

    /** The lowest candidate below the price in its currency; the last source is the seller's sale price. */
    static String cleanSalePrice(Rule r, Flavour fl, Object[] in, List<String> warnings) {
        Object[] price = money((Cash) in[r.sources[0]]);
        if (price == null) {
            return null;
        }
        Object[] sale = null;
        Object[] candidate = null;
        for (int i = 1; i < r.sources.length; i++) {
            candidate = money((Cash) in[r.sources[i]]);
            if (candidate != null && candidate[1].equals(price[1])
                    && ((BigDecimal) candidate[0]).compareTo((BigDecimal) price[0]) < 0
                    && (sale == null || ((BigDecimal) candidate[0]).compareTo((BigDecimal) sale[0]) < 0)) {
                sale = candidate;
            }
        }
        if (sale == null && candidate != null) {
            add(warnings, r.invalid);
        }
        return sale == null ? null : formatMoney(sale, fl.amountOnly);
    }

    static String cleanGtin(Rule r, Object[] in, List<String> warnings) {
        for (int s : r.sources) {
            String raw = (String) in[s];
            String g = raw == null ? null : removeSpaceAndDash(raw);
            if (truthy(g)) {
                if (gtinOk(g)) {
                    return g;
                }
                add(warnings, r.invalid);
                return null;
            }
        }
        return null;
    }

    static String coalesce(Rule r, String[] f) {
        for (int k : r.of) {
            if (f[k] != null) {
                return f[k];
            }
        }
        return null;
    }

    static String flag(Rule r, String[] f) {
        for (int k : r.of) {
            if (truthy(f[k])) {
                return null;
            }
        }
        return r.value;
    }

    // ---------------------------------------------------------------- the UDF

    private transient Program lastProgram;
    private transient Map<String, Flavour> flavours;
    private transient Map<Flavour, Map<String, Program>> programs;
    private transient StructType lastSchema;
    private transient int[] at;

    /**
     * The program of this call over its flavour: literals, parsed once per task and kept, as
     * one instance serves every call site of a query (several templates in one select).
     */
    Program program(String program, String flavour) {
        Program p = lastProgram;
        if (p != null && p.source.equals(program) && p.flavour.source.equals(flavour)) {
            return p;
        }
        if (flavours == null) {
            flavours = new HashMap<>();
            programs = new HashMap<>();
        }
        Flavour fl = flavours.computeIfAbsent(flavour, Flavour::new);
        p = programs.computeIfAbsent(fl, x -> new HashMap<>()).computeIfAbsent(program, x -> new Program(x, fl));
        return lastProgram = p;
    }

    /** The flavour's inputs from the struct ``row``, found by field name. */
    Object[] inputs(Flavour fl, Row row) {
        StructType schema = row.schema();
        if (at == null || schema != lastSchema && !schema.equals(lastSchema)) {
            at = new int[fl.inputs.length];
            List<String> names = List.of(schema.fieldNames());
            for (int i = 0; i < at.length; i++) {
                at[i] = index(names, fl.inputs[i], "input (the struct's fields are the inputs)");
            }
            lastSchema = schema;
        }
        Object[] in = new Object[at.length];
        for (int i = 0; i < at.length; i++) {
            if (row.isNullAt(at[i])) {
                continue;
            }
            switch (fl.types[i]) {
                case STRING: in[i] = row.getString(at[i]); break;
                case INT: in[i] = row.getInt(at[i]); break;
                default: in[i] = Cash.of(row.getStruct(at[i])); break;
            }
        }
        return in;
    }

    @Override
    public Row call(String program, String flavour, Boolean payload, Row inputs) {
        Program p = program(program, flavour);
        Result r = renderOffer(p, p.flavour, Boolean.TRUE.equals(payload), inputs(p.flavour, inputs));
        return RowFactory.create(r.text, r.errors, r.warnings, r.payload, r.missing);
    }

    /** Whether ``program`` compiles over ``flavour``: the message of what it uses that the flavour does not set. */
    public static String check(String program, String flavour) {
        try {
            new Program(program, new Flavour(flavour));
            return null;
        } catch (IllegalArgumentException e) {
            return e.getMessage();
        }
    }
}
