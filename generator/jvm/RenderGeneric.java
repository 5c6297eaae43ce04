package feedgen.jvm;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF4;
import org.apache.spark.sql.catalyst.CatalystTypeConverters;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.SpecializedGetters;
import org.apache.spark.sql.catalyst.util.ArrayData;
import org.apache.spark.sql.catalyst.util.MapData;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.BooleanType;
import org.apache.spark.sql.types.ByteType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.MapType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.types.TimestampNTZType;
import org.apache.spark.sql.types.TimestampType;

import scala.Function1;

/**
 * One offer rendered by a generic template (generic_csv, generic_tsv) in the JVM: the
 * aggregate paths a definition chose (``options.fields``), one cell each, byte for byte as
 * render.py's ``_cell_text`` and ``_row_writer`` write them, and the payload as
 * ``content_hash`` writes ``{path: _jsonable(value)}``.
 *
 * A value is read as Python holds it after Arrow (``Object``s: null, String, Boolean, Long for
 * every whole number, Double, BigDecimal, Iso for dates and timestamps, List, and Map with
 * str() keys for structs and maps), then written with Python's rules: ``float.__repr__``,
 * ``str(Decimal)``, ``datetime.isoformat()`` in the session's time zone, ``json.dumps`` with
 * sorted keys (code point order). The spec is generator/offer_spec.py's ``generic_json``: the
 * fields by path, found by name (column ``_fg_path:<path>``), the key path and its error.
 *
 * Cells are computed once per row and path (``Cells``) and shared by every generic template
 * of a pass that selects the path: GeneratePass renders 200 feeds with 200 ``fields`` lists
 * from one cell per path, joined per feed.
 *
 * As a UDF: (spec JSON, time zone, payload?, struct of ``_fg_path:<path>`` fields) →
 * struct(text, errors, warnings, payload, missing), as RenderOffer.
 */
public final class RenderGeneric implements UDF4<String, String, Boolean, Row, Row> {

    private static final long serialVersionUID = 1L;
    /** The name of the column (or struct field) that holds the value of a path. */
    static final String PATH = "_fg_path:";

    // ---------------------------------------------------------------- the spec

    /** A generic template with its fields: offer_spec.generic_json. */
    static final class Spec implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final String source;
        final String name;
        final String sep;
        final boolean csv;
        final String key;
        final String missing;
        final String[] fields;
        final int[] payload;          // the distinct fields in sorted order: the payload's keys
        final String[] payloadKeys;   // "path": as JSON, in that order

        Spec(String json) {
            source = json;
            JsonNode spec = RenderOffer.readSpec(json, "the generic spec");
            name = RenderOffer.str(spec, "name");
            sep = RenderOffer.str(spec, "sep");
            csv = ",".equals(sep);
            key = RenderOffer.str(spec, "key");
            missing = RenderOffer.str(spec, "missing");
            JsonNode fs = spec.get("fields");
            fields = new String[fs.size()];
            for (int i = 0; i < fields.length; i++) {
                fields[i] = fs.get(i).asText();
            }
            List<Integer> distinct = new ArrayList<>();
            for (int i = 0; i < fields.length; i++) {
                boolean seen = false;
                for (int k : distinct) {
                    seen |= fields[k].equals(fields[i]);
                }
                if (!seen) {
                    distinct.add(i);
                }
            }
            distinct.sort((a, b) -> compareCodePoints(fields[a], fields[b]));
            payload = distinct.stream().mapToInt(Integer::intValue).toArray();
            payloadKeys = new String[payload.length];
            for (int i = 0; i < payload.length; i++) {
                StringBuilder b = new StringBuilder();
                RenderOffer.jsonString(b, fields[payload[i]]);
                payloadKeys[i] = b.append(':').toString();
            }
        }

        /** The paths this template reads: its key, then its fields. */
        List<String> paths() {
            List<String> out = new ArrayList<>();
            out.add(key);
            out.addAll(Arrays.asList(fields));
            return out;
        }
    }

    // ---------------------------------------------------------------- values as Python holds them

    /** A date or timestamp: typed (never neutralised), written as its isoformat(). */
    static final class Iso {
        final String text;

        Iso(String text) {
            this.text = text;
        }
    }

    /** Whether RenderGeneric reads values of ``type`` (null: yes; else what it does not read). */
    static String unsupported(DataType type) {
        if (type instanceof StringType || type instanceof BooleanType || type instanceof ByteType
                || type instanceof ShortType || type instanceof IntegerType || type instanceof LongType
                || type instanceof FloatType || type instanceof DoubleType || type instanceof DecimalType
                || type instanceof DateType || type instanceof TimestampType || type instanceof TimestampNTZType) {
            return null;
        }
        if (type instanceof ArrayType a) {
            return unsupported(a.elementType());
        }
        if (type instanceof MapType m) {
            DataType k = m.keyType();
            boolean keyOk = k instanceof StringType || k instanceof BooleanType || k instanceof ByteType
                    || k instanceof ShortType || k instanceof IntegerType || k instanceof LongType;
            return keyOk ? unsupported(m.valueType()) : k.simpleString();
        }
        if (type instanceof StructType s) {
            for (StructField f : s.fields()) {
                String problem = unsupported(f.dataType());
                if (problem != null) {
                    return problem;
                }
            }
            return null;
        }
        return type.simpleString();
    }

    /** Value ``i`` of ``g`` (a row, a struct, an array) of ``type``, as Python holds it after Arrow. */
    static Object value(SpecializedGetters g, int i, DataType type, ZoneId zone) {
        if (g.isNullAt(i)) {
            return null;
        }
        if (type instanceof StringType) {
            return g.getUTF8String(i).toString();
        }
        if (type instanceof LongType) {
            return g.getLong(i);
        }
        if (type instanceof IntegerType) {
            return (long) g.getInt(i);
        }
        if (type instanceof DoubleType) {
            return g.getDouble(i);
        }
        if (type instanceof DecimalType d) {
            return g.getDecimal(i, d.precision(), d.scale()).toJavaBigDecimal();
        }
        if (type instanceof BooleanType) {
            return g.getBoolean(i);
        }
        if (type instanceof TimestampType) {
            return new Iso(isoTimestamp(g.getLong(i), zone));
        }
        if (type instanceof TimestampNTZType) {
            return new Iso(isoTimestamp(g.getLong(i), null));
        }
        if (type instanceof DateType) {
            return new Iso(isoDate(LocalDate.ofEpochDay(g.getInt(i))));
        }
        if (type instanceof ShortType) {
            return (long) g.getShort(i);
        }
        if (type instanceof ByteType) {
            return (long) g.getByte(i);
        }
        if (type instanceof FloatType) {
            return (double) g.getFloat(i);
        }
        if (type instanceof ArrayType a) {
            ArrayData array = g.getArray(i);
            int n = array.numElements();
            List<Object> out = new ArrayList<>(n);
            for (int k = 0; k < n; k++) {
                out.add(value(array, k, a.elementType(), zone));
            }
            return out;
        }
        if (type instanceof MapType m) {
            MapData map = g.getMap(i);
            ArrayData keys = map.keyArray();
            ArrayData values = map.valueArray();
            Map<String, Object> out = new LinkedHashMap<>();
            for (int k = 0; k < map.numElements(); k++) {
                // dict(pairs): a later key wins; _jsonable makes every key str()
                out.put(pyStr(value(keys, k, m.keyType(), zone)), value(values, k, m.valueType(), zone));
            }
            return out;
        }
        if (type instanceof StructType s) {
            StructField[] fs = s.fields();
            InternalRow struct = g.getStruct(i, fs.length);
            Map<String, Object> out = new LinkedHashMap<>();
            for (int k = 0; k < fs.length; k++) {
                out.put(fs[k].name(), value(struct, k, fs[k].dataType(), zone));
            }
            return out;
        }
        throw new IllegalArgumentException("RenderGeneric does not read " + type.simpleString());
    }

    static String two(int n) {
        return n < 10 ? "0" + n : Integer.toString(n);
    }

    /** date.isoformat() */
    static String isoDate(LocalDate d) {
        int y = d.getYear();
        String year = y >= 0 && y < 1000 ? String.format("%04d", y) : Integer.toString(y);
        return year + "-" + two(d.getMonthValue()) + "-" + two(d.getDayOfMonth());
    }

    /** datetime.isoformat() of ``micros`` since the epoch: in ``zone`` with its offset, or naive (null). */
    static String isoTimestamp(long micros, ZoneId zone) {
        Instant instant = Instant.ofEpochSecond(Math.floorDiv(micros, 1_000_000L),
                Math.floorMod(micros, 1_000_000L) * 1000L);
        ZoneOffset offset = zone == null ? ZoneOffset.UTC : zone.getRules().getOffset(instant);
        LocalDateTime t = LocalDateTime.ofInstant(instant, offset);
        StringBuilder b = new StringBuilder(32);
        b.append(isoDate(t.toLocalDate())).append('T').append(two(t.getHour())).append(':')
                .append(two(t.getMinute())).append(':').append(two(t.getSecond()));
        int us = t.getNano() / 1000;
        if (us != 0) {
            b.append('.').append(String.format("%06d", us));
        }
        if (zone != null) {
            int s = offset.getTotalSeconds();
            b.append(s < 0 ? '-' : '+');
            s = Math.abs(s);
            b.append(two(s / 3600)).append(':').append(two(s / 60 % 60));
            if (s % 60 != 0) {
                b.append(':').append(two(s % 60));
            }
        }
        return b.toString();
    }

    // ---------------------------------------------------------------- Python's writing of values

    /** Python's str ordering: by code point (String.compareTo orders UTF-16 units). */
    static int compareCodePoints(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int x = a.codePointAt(i);
            int y = b.codePointAt(j);
            if (x != y) {
                return Integer.compare(x, y);
            }
            i += Character.charCount(x);
            j += Character.charCount(y);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    /** The closest ``p``-digit decimal to ``exact`` that parses back to ``d``, or null. */
    static BigDecimal nearest(BigDecimal exact, int p, double d) {
        BigDecimal even = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
        if (even.doubleValue() == d) {
            return even;
        }
        BigDecimal other = exact.round(new MathContext(p, even.compareTo(exact) < 0 ? RoundingMode.CEILING
                : RoundingMode.FLOOR));
        return other.doubleValue() == d ? other : null;
    }

    /** float.__repr__: the shortest decimal that reads back as ``d`` (the closest such), fixed or exponent. */
    static String pyRepr(double d) {
        if (Double.isNaN(d)) {
            return "nan";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "inf" : "-inf";
        }
        if (d == 0) {
            return Double.doubleToRawLongBits(d) < 0 ? "-0.0" : "0.0";
        }
        // Java's digits read back as d but may be one too many (JDK-4511638): an upper bound
        String java = Double.toString(Math.abs(d));
        int e = java.indexOf('E');
        String mantissa = (e < 0 ? java : java.substring(0, e)).replace(".", "");
        int a = 0;
        int z = mantissa.length();
        while (a < z - 1 && mantissa.charAt(a) == '0') {
            a++;
        }
        while (z > a + 1 && mantissa.charAt(z - 1) == '0') {
            z--;
        }
        BigDecimal exact = new BigDecimal(d);
        BigDecimal best = null;
        for (int p = z - a; p >= 1; p--) {
            BigDecimal r = nearest(exact, p, d);
            if (r == null) {
                break;
            }
            best = r;
        }
        for (int p = z - a + 1; best == null && p <= 17; p++) {
            best = nearest(exact, p, d);
        }
        best = best.stripTrailingZeros();
        String digits = best.unscaledValue().abs().toString();
        int decpt = digits.length() - best.scale();   // value = 0.digits × 10^decpt
        StringBuilder b = new StringBuilder(24);
        if (d < 0) {
            b.append('-');
        }
        if (decpt <= -4 || decpt > 16) {
            b.append(digits.charAt(0));
            if (digits.length() > 1) {
                b.append('.').append(digits, 1, digits.length());
            }
            int exp = decpt - 1;
            b.append('e').append(exp < 0 ? '-' : '+').append(two(Math.abs(exp)));
        } else if (decpt <= 0) {
            b.append("0.");
            for (int k = 0; k < -decpt; k++) {
                b.append('0');
            }
            b.append(digits);
        } else if (decpt < digits.length()) {
            b.append(digits, 0, decpt).append('.').append(digits, decpt, digits.length());
        } else {
            b.append(digits);
            for (int k = digits.length(); k < decpt; k++) {
                b.append('0');
            }
            b.append(".0");
        }
        return b.toString();
    }

    static boolean finite(double d) {
        return !Double.isNaN(d) && !Double.isInfinite(d);
    }

    /** str(v) of a value that a list cell joins or a dict key is: text, a whole number, a bool. */
    static String pyStr(Object v) {
        if (v instanceof Boolean b) {
            return b ? "True" : "False";
        }
        if (v instanceof Double d) {
            return pyRepr(d);
        }
        if (v instanceof Iso iso) {
            return iso.text;
        }
        return String.valueOf(v);
    }

    /** Typed values (render._TYPED_CELL): a spreadsheet reads them as what they are; never neutralised. */
    static boolean typed(Object v) {
        return v instanceof Boolean || v instanceof Long || v instanceof Double || v instanceof BigDecimal
                || v instanceof Iso;
    }

    /** render._cell_text */
    static String cellText(Object v) {
        if (v == null) {
            return "";
        }
        if (v instanceof String s) {
            return s;
        }
        if (v instanceof Boolean b) {
            return b ? "true" : "false";
        }
        if (v instanceof Double d) {
            return finite(d) ? pyRepr(d) : "None";   // str(_jsonable(nan)): str(None)
        }
        if (v instanceof Long || v instanceof BigDecimal || v instanceof Iso) {
            return pyStr(v);
        }
        if (v instanceof List<?> list && joinable(list)) {
            StringBuilder b = new StringBuilder();
            for (int k = 0; k < list.size(); k++) {
                if (k > 0) {
                    b.append('|');
                }
                b.append(pyStr(list.get(k)));
            }
            return b.toString();
        }
        StringBuilder b = new StringBuilder();
        json(b, v, false);
        return b.toString();
    }

    /** all(isinstance(v, str | int) for v in list): a bool is an int */
    static boolean joinable(List<?> list) {
        for (Object v : list) {
            if (!(v instanceof String || v instanceof Long || v instanceof Boolean)) {
                return false;
            }
        }
        return true;
    }

    /** json.dumps(_jsonable(v), ensure_ascii=False, sort_keys=True), compact: separators=(",", ":"). */
    @SuppressWarnings("unchecked")
    static void json(StringBuilder b, Object v, boolean compact) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof String s) {
            RenderOffer.jsonString(b, RenderOffer.xmlClean(s));
        } else if (v instanceof Boolean x) {
            b.append(x ? "true" : "false");
        } else if (v instanceof Long) {
            b.append(v);
        } else if (v instanceof Double d) {
            b.append(finite(d) ? pyRepr(d) : "null");
        } else if (v instanceof BigDecimal || v instanceof Iso) {
            RenderOffer.jsonString(b, pyStr(v));
        } else if (v instanceof List<?> list) {
            b.append('[');
            for (int k = 0; k < list.size(); k++) {
                if (k > 0) {
                    b.append(compact ? "," : ", ");
                }
                json(b, list.get(k), compact);
            }
            b.append(']');
        } else {
            Map<String, Object> map = (Map<String, Object>) v;
            String[] keys = map.keySet().toArray(new String[0]);
            Arrays.sort(keys, RenderGeneric::compareCodePoints);
            b.append('{');
            for (int k = 0; k < keys.length; k++) {
                if (k > 0) {
                    b.append(compact ? "," : ", ");
                }
                RenderOffer.jsonString(b, keys[k]);
                b.append(compact ? ":" : ": ");
                json(b, map.get(keys[k]), compact);
            }
            b.append('}');
        }
    }

    /** csv_cell (RFC 4180): quoted when it holds a quote, comma or line break, or has an edge space. */
    static String csvCell(String t) {
        if (t.indexOf('"') >= 0) {
            return '"' + t.replace("\"", "\"\"") + '"';
        }
        if (t.indexOf(',') >= 0 || t.indexOf('\n') >= 0 || t.indexOf('\r') >= 0 || t.startsWith(" ")
                || t.endsWith(" ")) {
            return '"' + t + '"';
        }
        return t;
    }

    // ---------------------------------------------------------------- one row's cells, once per path

    /**
     * The values of one row by path index, each read, written as a cell and as JSON at most
     * once however many templates select it; ``next`` starts a row.
     */
    abstract static class Cells {
        final Object[] values;
        final boolean[] read;
        final String[] texts;
        final String[] csvs;
        final String[] jsons;

        Cells(int paths) {
            values = new Object[paths];
            read = new boolean[paths];
            texts = new String[paths];
            csvs = new String[paths];
            jsons = new String[paths];
        }

        /** The value of path ``p`` in the current row. */
        abstract Object read(int p);

        void next() {
            Arrays.fill(read, false);
            Arrays.fill(texts, null);
            Arrays.fill(csvs, null);
            Arrays.fill(jsons, null);
        }

        Object value(int p) {
            if (!read[p]) {
                values[p] = read(p);
                read[p] = true;
            }
            return values[p];
        }

        /** The cell's text on one line, neutralised unless typed: _row_writer before csv_cell/tsv_cell. */
        String text(int p) {
            String t = texts[p];
            if (t == null) {
                Object v = value(p);
                t = RenderOffer.textClean(cellText(v));
                if (!typed(v)) {
                    t = RenderOffer.neutraliseFormula(t);
                }
                texts[p] = t;
            }
            return t;
        }

        String cell(int p, boolean csv) {
            if (!csv) {
                return text(p);   // tsv_cell: the text is one line already
            }
            String c = csvs[p];
            if (c == null) {
                c = csvs[p] = csvCell(text(p));
            }
            return c;
        }

        String json(int p) {
            String j = jsons[p];
            if (j == null) {
                StringBuilder b = new StringBuilder();
                RenderGeneric.json(b, value(p), true);
                j = jsons[p] = b.toString();
            }
            return j;
        }
    }

    /**
     * Render one row with ``spec``, whose key and fields are the paths ``slots`` (key first,
     * as Spec.paths) of ``cells``.
     */
    static RenderOffer.Result render(Spec spec, int[] slots, Cells cells, boolean withPayload) {
        Object key = cells.value(slots[0]);
        boolean none = key == null || key instanceof String s && s.isEmpty();
        String[] errors = none ? new String[] {spec.missing} : RenderOffer.NONE;
        boolean blank = key == null || key instanceof String s && RenderOffer.isBlank(s);
        String[] missing = blank ? new String[] {spec.key} : RenderOffer.NONE;
        String text = null;
        if (!none) {
            StringBuilder b = new StringBuilder(256);
            for (int i = 0; i < spec.fields.length; i++) {
                if (i > 0) {
                    b.append(spec.sep);
                }
                b.append(cells.cell(slots[i + 1], spec.csv));
            }
            text = b.append('\n').toString();
        }
        String payload = null;
        if (withPayload) {
            StringBuilder b = new StringBuilder(256).append('{');
            for (int i = 0; i < spec.payload.length; i++) {
                if (i > 0) {
                    b.append(',');
                }
                b.append(spec.payloadKeys[i]).append(cells.json(slots[spec.payload[i] + 1]));
            }
            payload = b.append('}').toString();
        }
        return new RenderOffer.Result(text, errors, RenderOffer.NONE, payload, missing);
    }

    // ---------------------------------------------------------------- the UDF

    private transient Spec lastSpec;
    private transient Map<String, Spec> specs;
    private transient StructType lastSchema;
    private transient Spec resolved;
    private transient Function1<Object, Object> toInternal;
    private transient int[] ords;
    private transient DataType[] types;
    private transient String lastZone;
    private transient ZoneId zone;

    Spec spec(String json) {
        Spec s = lastSpec;
        if (s != null && s.source.equals(json)) {
            return s;
        }
        if (specs == null) {
            specs = new HashMap<>();
        }
        return lastSpec = specs.computeIfAbsent(json, Spec::new);
    }

    @Override
    public Row call(String specJson, String timeZone, Boolean payload, Row values) {
        Spec s = spec(specJson);
        if (!timeZone.equals(lastZone)) {
            zone = ZoneId.of(timeZone);
            lastZone = timeZone;
        }
        List<String> paths = s.paths();
        StructType schema = values.schema();
        if (toInternal == null || s != resolved || schema != lastSchema && !schema.equals(lastSchema)) {
            toInternal = CatalystTypeConverters.createToCatalystConverter(schema);
            List<String> names = List.of(schema.fieldNames());
            ords = new int[paths.size()];
            types = new DataType[paths.size()];
            for (int p = 0; p < ords.length; p++) {
                ords[p] = RenderOffer.index(names, PATH + paths.get(p), "path (the struct's fields are the paths)");
                types[p] = schema.fields()[ords[p]].dataType();
            }
            lastSchema = schema;
            resolved = s;
        }
        InternalRow row = (InternalRow) toInternal.apply(values);
        ZoneId z = zone;
        int[] at = ords;
        DataType[] ts = types;
        Cells cells = new Cells(at.length) {
            @Override
            Object read(int p) {
                return RenderGeneric.value(row, at[p], ts[p], z);
            }
        };
        int[] slots = new int[at.length];
        for (int p = 0; p < slots.length; p++) {
            slots[p] = p;
        }
        RenderOffer.Result r = render(s, slots, cells, Boolean.TRUE.equals(payload));
        return RowFactory.create(r.text, r.errors, r.warnings, r.payload, r.missing);
    }
}
