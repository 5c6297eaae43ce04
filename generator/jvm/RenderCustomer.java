package feedgen.jvm;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF3;

/**
 * One customer rendered by a built-in audience export (ids_csv, google_customer_match,
 * meta_custom_audience) in the JVM, byte for byte as render.py's ``_customer_prepare`` and
 * ``_row_writer`` write it: the columns of generator/customer_spec.py (``customer_json``),
 * each made from one string column of the customer aggregate by a rule of
 * generator/audience.py (Python's ``str.strip``, ``str.lower``, ``str.split``, NFC and the
 * ``re`` classes ``\s``, ``\w`` and ``\d`` as Python defines them for text), sent in clear or
 * as the SHA-256 hex of its UTF-8 bytes. The payload is ``content_hash``'s JSON of the columns.
 *
 * As a UDF: (spec JSON, payload?, struct of the spec's inputs, by name) →
 * struct(text, errors, warnings, payload, missing), as RenderOffer.
 */
public final class RenderCustomer implements UDF3<String, Boolean, Row, Row> {

    private static final long serialVersionUID = 1L;

    static final List<String> RULES = List.of("id", "google_email", "meta_email", "e164_phone", "meta_phone",
            "google_name", "meta_name", "normalize_country", "meta_country", "zip", "meta_zip");
    static final int ID = 0;
    static final int GOOGLE_EMAIL = 1;
    static final int META_EMAIL = 2;
    static final int E164_PHONE = 3;
    static final int META_PHONE = 4;
    static final int GOOGLE_NAME = 5;
    static final int META_NAME = 6;
    static final int COUNTRY = 7;
    static final int META_COUNTRY = 8;
    static final int ZIP = 9;
    static final int META_ZIP = 10;

    /** customer_spec.customer_json, resolved. */
    static final class Spec implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final String source;
        final String name;
        final String sep;
        final String[] inputs;
        final int country;
        final String[] names;
        final int[] sources;
        final int[] rules;
        final boolean[] hashed;
        final String[] bad;
        final String[] missing;
        final int[][] requireAny;
        final String error;
        final int[] required;
        final String[] payloadKeys;   // "name": as JSON, in sorted order
        final int[] payload;
        final Map<String, String> callingCodes = new HashMap<>();
        final Map<String, Integer> nsnLength = new HashMap<>();
        final Set<String> keepsTrunkZero = new HashSet<>();
        final Map<String, String> countryNames = new HashMap<>();

        Spec(String json) {
            source = json;
            JsonNode spec = RenderOffer.readSpec(json, "the customer spec");
            name = RenderOffer.str(spec, "name");
            sep = RenderOffer.str(spec, "sep");
            JsonNode in = spec.get("inputs");
            inputs = new String[in.size()];
            for (int i = 0; i < inputs.length; i++) {
                inputs[i] = in.get(i).asText();
            }
            country = spec.get("country").asInt();
            JsonNode cs = spec.get("columns");
            int n = cs.size();
            names = new String[n];
            sources = new int[n];
            rules = new int[n];
            hashed = new boolean[n];
            bad = new String[n];
            missing = new String[n];
            for (int i = 0; i < n; i++) {
                JsonNode c = cs.get(i);
                names[i] = RenderOffer.str(c, "name");
                sources[i] = c.get("input").asInt();
                rules[i] = RULES.indexOf(RenderOffer.str(c, "rule"));
                if (rules[i] < 0) {
                    throw new IllegalArgumentException("customer export '" + name + "': unknown rule " + RenderOffer.str(c, "rule"));
                }
                hashed[i] = c.get("hashed").asBoolean();
                bad[i] = RenderOffer.str(c, "bad");
                missing[i] = RenderOffer.str(c, "missing");
            }
            JsonNode groups = spec.get("require_any");
            requireAny = new int[groups.size()][];
            for (int g = 0; g < requireAny.length; g++) {
                JsonNode group = groups.get(g);
                requireAny[g] = new int[group.size()];
                for (int k = 0; k < requireAny[g].length; k++) {
                    requireAny[g][k] = group.get(k).asInt();
                }
            }
            error = RenderOffer.str(spec, "error");
            required = RenderOffer.ints(spec, "required");
            payload = RenderOffer.ints(spec, "payload");
            payloadKeys = new String[payload.length];
            for (int i = 0; i < payload.length; i++) {
                StringBuilder b = new StringBuilder();
                RenderOffer.jsonString(b, names[payload[i]]);
                payloadKeys[i] = b.append(':').toString();
            }
            spec.get("calling_codes").properties().forEach(e -> callingCodes.put(e.getKey(), e.getValue().asText()));
            spec.get("nsn_length").properties().forEach(e -> nsnLength.put(e.getKey(), e.getValue().asInt()));
            spec.get("keeps_trunk_zero").forEach(v -> keepsTrunkZero.add(v.asText()));
            spec.get("country_names").properties().forEach(e -> countryNames.put(e.getKey(), e.getValue().asText()));
        }
    }

    // ---------------------------------------------------------------- audience.py's rules

    /** Python's str.lower(). */
    static String lower(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c >= 0x80 || (c >= 'A' && c <= 'Z')) {
                return s.toLowerCase(Locale.ROOT);
            }
        }
        return s;
    }

    /** audience._text: NFC of text_clean(value), stripped; null when empty. */
    static String clean(String value) {
        if (value == null) {
            return null;
        }
        String t = RenderOffer.textClean(value);
        for (int i = 0; i < t.length(); i++) {
            if (t.charAt(i) >= 0x300) {
                t = Normalizer.normalize(t, Normalizer.Form.NFC);
                break;
            }
        }
        t = RenderOffer.strip(t);
        return t.isEmpty() ? null : t;
    }

    /** audience._EMAIL: ^[^@\s]+@[^@\s]+\.[^@\s]+$ */
    static boolean emailShape(String t) {
        int at = -1;
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (RenderOffer.isSpace(c)) {
                return false;
            }
            if (c == '@') {
                if (at >= 0) {
                    return false;
                }
                at = i;
            }
        }
        if (at <= 0) {
            return false;
        }
        // the domain holds a dot with a character before and after it
        for (int i = at + 2; i < t.length() - 1; i++) {
            if (t.charAt(i) == '.') {
                return true;
            }
        }
        return false;
    }

    static String metaEmail(String value) {
        String t = clean(value);
        if (t == null) {
            return null;
        }
        t = lower(t);
        return emailShape(t) ? t : null;
    }

    static String googleEmail(String value) {
        String t = metaEmail(value);
        if (t == null) {
            return null;
        }
        int at = t.lastIndexOf('@');
        String local = t.substring(0, at);
        String domain = t.substring(at + 1);
        if (domain.equals("gmail.com") || domain.equals("googlemail.com")) {
            int plus = local.indexOf('+');
            local = (plus >= 0 ? local.substring(0, plus) : local).replace(".", "");
            if (local.isEmpty()) {
                return null;
            }
        }
        return local + "@" + domain;
    }

    static String normalizeCountry(Spec s, String value) {
        String t = clean(value);
        if (t == null) {
            return null;
        }
        if (t.length() == 2 && asciiLetter(t.charAt(0)) && asciiLetter(t.charAt(1))) {
            return t.toUpperCase(Locale.ROOT);
        }
        return s.countryNames.get(lower(t));
    }

    static boolean asciiLetter(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }

    static String e164Phone(Spec s, String value, String country) {
        String t = clean(value);
        if (t == null) {
            return null;
        }
        StringBuilder b = new StringBuilder(t.length());
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (!(RenderOffer.isSpace(c) || c == '-' || c == '(' || c == ')' || c == '.' || c == '/')) {
                b.append(c);
            }
        }
        String digits = b.toString();
        boolean international;
        if (digits.startsWith("+")) {
            digits = digits.substring(1);
            international = true;
        } else if (digits.startsWith("00")) {
            digits = digits.substring(2);
            international = true;
        } else {
            international = false;
        }
        if (digits.isEmpty()) {
            return null;
        }
        for (int i = 0; i < digits.length(); i++) {
            char c = digits.charAt(i);
            if (c < '0' || c > '9') {
                return null;
            }
        }
        if (!international) {
            String iso = normalizeCountry(s, country);
            String key = iso == null ? "" : iso;
            String code = s.callingCodes.get(key);
            int length = s.nsnLength.getOrDefault(key, 0);
            if (code == null) {
                return null;
            }
            if (!(length > 0 && digits.length() == code.length() + length && digits.startsWith(code))) {
                if (("US".equals(iso) || "CA".equals(iso)) && digits.length() == 11 && digits.startsWith("1")
                        || !s.keepsTrunkZero.contains(iso) && digits.startsWith("0")) {
                    digits = digits.substring(1);
                }
                if (length > 0 && digits.length() != length) {
                    return null;
                }
                digits = code + digits;
            }
        }
        if (digits.startsWith("0") || digits.length() < 8 || digits.length() > 15) {
            return null;
        }
        return "+" + digits;
    }

    static String googleName(String value) {
        String t = clean(value);
        return t == null ? null : RenderOffer.singleSpaced(lower(t));
    }

    /** Kept by audience._NOT_LETTER ([^\w]|[\d_]): Python's str.isalnum() and not a decimal digit. */
    static boolean nameChar(int c) {
        if (c < 0x80) {
            return asciiLetter((char) c);
        }
        int type = Character.getType(c);
        return Character.isLetter(c) || type == Character.LETTER_NUMBER || type == Character.OTHER_NUMBER;
    }

    static String metaName(String value) {
        String t = clean(value);
        if (t == null) {
            return null;
        }
        t = lower(t);
        StringBuilder b = new StringBuilder(t.length());
        for (int i = 0; i < t.length(); ) {
            int c = t.codePointAt(i);
            if (nameChar(c)) {
                b.appendCodePoint(c);
            }
            i += Character.charCount(c);
        }
        return b.length() == 0 ? null : b.toString();
    }

    static String metaZip(Spec s, String value, String country) {
        String t = clean(value);
        if (t == null) {
            return null;
        }
        t = lower(t);
        StringBuilder b = new StringBuilder(t.length());
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (!(RenderOffer.isSpace(c) || c == '-')) {
                b.append(c);
            }
        }
        t = b.toString();
        if ("US".equals(normalizeCountry(s, country)) && RenderOffer.length(t) > 5) {
            t = RenderOffer.head(t, 5);
        }
        return t.isEmpty() ? null : t;
    }

    /** Google's zip, sent in clear: text_clean(str(value)).strip() or None. */
    static String zip(String value) {
        if (value == null || value.isEmpty()) {
            return null;
        }
        String t = RenderOffer.strip(RenderOffer.textClean(value));
        return t.isEmpty() ? null : t;
    }

    static String rule(Spec s, int rule, String value, String country) {
        switch (rule) {
            case ID: return value;
            case GOOGLE_EMAIL: return googleEmail(value);
            case META_EMAIL: return metaEmail(value);
            case E164_PHONE: return e164Phone(s, value, country);
            case META_PHONE: {
                String e = e164Phone(s, value, country);
                return e == null ? null : e.substring(1);
            }
            case GOOGLE_NAME: return googleName(value);
            case META_NAME: return metaName(value);
            case COUNTRY: return normalizeCountry(s, value);
            case META_COUNTRY: {
                String iso = normalizeCountry(s, value);
                return iso == null ? null : iso.toLowerCase(Locale.ROOT);
            }
            case ZIP: return zip(value);
            default: return metaZip(s, value, country);
        }
    }

    static final ThreadLocal<MessageDigest> SHA = ThreadLocal.withInitial(() -> {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    });

    static String sha256Hex(String value) {
        return GeneratePass.hex(SHA.get().digest(value.getBytes(StandardCharsets.UTF_8)));
    }

    // ---------------------------------------------------------------- one customer

    /** Render one customer: ``in`` holds the spec's inputs, in its order (null: no value). */
    static RenderOffer.Result render(Spec s, String[] in, boolean withPayload) {
        int n = s.names.length;
        String country = s.country >= 0 ? in[s.country] : null;
        String[] values = new String[n];
        List<String> errors = null;
        List<String> warnings = null;
        for (int i = 0; i < n; i++) {
            String raw = in[s.sources[i]];
            String v = values[i] = rule(s, s.rules[i], raw, country);
            if (s.bad[i] != null && raw != null && !raw.isEmpty() && v == null) {
                if (warnings == null) {
                    warnings = new ArrayList<>(2);
                }
                warnings.add(s.bad[i]);
            }
            if (s.missing[i] != null && (v == null || v.isEmpty())) {
                if (errors == null) {
                    errors = new ArrayList<>(2);
                }
                errors.add(s.missing[i]);
            }
        }
        if (s.error != null) {
            boolean any = false;
            for (int[] group : s.requireAny) {
                boolean all = true;
                for (int k : group) {
                    all &= values[k] != null && !values[k].isEmpty();
                }
                any |= all;
            }
            if (!any) {
                if (errors == null) {
                    errors = new ArrayList<>(1);
                }
                errors.add(s.error);
            }
        }
        for (int i = 0; i < n; i++) {
            if (s.hashed[i]) {
                values[i] = values[i] == null || values[i].isEmpty() ? null : sha256Hex(values[i]);
            }
        }
        String text = null;
        if (errors == null) {
            StringBuilder b = new StringBuilder(64 * n);
            for (int i = 0; i < n; i++) {
                if (i > 0) {
                    b.append(s.sep);
                }
                RenderOffer.cell(b, values[i], s.sep, true);
            }
            text = b.append('\n').toString();
        }
        String payload = null;
        if (withPayload) {
            StringBuilder b = new StringBuilder(64 * n).append('{');
            for (int i = 0; i < s.payload.length; i++) {
                if (i > 0) {
                    b.append(',');
                }
                String v = values[s.payload[i]];
                b.append(s.payloadKeys[i]);
                if (v == null) {
                    b.append("null");
                } else {
                    RenderOffer.jsonString(b, v);
                }
            }
            payload = b.append('}').toString();
        }
        List<String> blank = null;
        for (int r : s.required) {
            if (RenderOffer.isBlank(in[r])) {
                if (blank == null) {
                    blank = new ArrayList<>(2);
                }
                blank.add(s.inputs[r]);
            }
        }
        return new RenderOffer.Result(text, errors == null ? RenderOffer.NONE : RenderOffer.array(errors),
                warnings == null ? RenderOffer.NONE : RenderOffer.array(warnings), payload,
                blank == null ? RenderOffer.NONE : RenderOffer.array(blank));
    }

    // ---------------------------------------------------------------- the UDF

    private transient Map<String, Spec> specs;

    @Override
    public Row call(String specJson, Boolean payload, Row values) {
        if (specs == null) {
            specs = new HashMap<>();
        }
        Spec s = specs.computeIfAbsent(specJson, Spec::new);
        String[] in = new String[s.inputs.length];
        for (int i = 0; i < in.length; i++) {
            Object v = values.get(values.fieldIndex(s.inputs[i]));
            in[i] = v == null ? null : v.toString();
        }
        RenderOffer.Result r = render(s, in, Boolean.TRUE.equals(payload));
        return RowFactory.create(r.text, r.errors, r.warnings, r.payload, r.missing);
    }
}
