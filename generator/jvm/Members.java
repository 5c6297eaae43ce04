package feedgen.jvm;

import java.math.BigDecimal;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF3;
import org.apache.spark.sql.types.DataTypes;

import scala.collection.Seq;

/**
 * The definitions' and/or/not over their clauses, per row, in the JVM: compile.Program's
 * straight-line code (``Program.as_json``). A clause is either a bit Spark computed and
 * packed into ``long`` words (bit b of word w is ``bits * w + b``), or a leaf of
 * compile.JvmLeaves evaluated here from a field of the row, with Spark's meaning (null:
 * false, but true for ``ne`` and ``not_in``; doubles equal when ``==`` or both NaN, NaN above
 * every number; decimals by value).
 *
 * As a UDF (one registered instance per program, ``register``): (array&lt;long&gt; words,
 * struct of the leaves' fields, a long it ignores: compile.py's barrier column) →
 * array&lt;int&gt;, the indices of the definitions the row satisfies, ascending. Each
 * distinct sub-expression is one instruction, computed at most once per row, and only when
 * asked for: and/or stop at their first deciding operand.
 */
public final class Members implements UDF3<Seq<Object>, Row, Long, int[]> {

    private static final long serialVersionUID = 1L;

    static final int ATOM = 0;
    static final int AND = 1;
    static final int OR = 2;
    static final int NOT = 3;
    static final int CONST = 4;

    final int bits;
    final int[] op;        // per instruction
    final int[] arg;       // ATOM: the clause; NOT: the operand; CONST: 0/1; AND/OR: start in args
    final int[] argEnd;    // AND/OR: end in args
    final int[] args;
    final int[] outputs;   // per definition: its instruction
    final int[] bitOf;     // per clause: its bit in the words, or -1 for a leaf
    final Leaf[] leaves;   // per clause: its leaf, or null

    static final List<String> OPS = List.of("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in",
            "starts_with", "ends_with", "contains", "has", "null", "not_null");
    static final int EQ = 0;
    static final int NE = 1;
    static final int GT = 2;
    static final int GTE = 3;
    static final int LT = 4;
    static final int LTE = 5;
    static final int BETWEEN = 6;
    static final int IN = 7;
    static final int NOT_IN = 8;
    static final int STARTS = 9;
    static final int ENDS = 10;
    static final int CONTAINS = 11;
    static final int HAS = 12;
    static final int NULL = 13;
    static final int NOT_NULL = 14;

    static final List<String> KINDS = List.of("string", "long", "double", "decimal", "bool", "micros", "strings");
    static final int STRING = 0;
    static final int LONG = 1;
    static final int DOUBLE = 2;
    static final int DECIMAL = 3;
    static final int BOOL = 4;
    static final int MICROS = 5;
    static final int STRINGS = 6;

    /** A clause on one field of the row: its values parsed as the field's kind. */
    static final class Leaf implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final int op;
        final int field;
        final int kind;
        final Object[] values;
        final HashSet<Object> set;

        Leaf(JsonNode spec, int[] kinds) {
            op = OPS.indexOf(spec.get("op").asText());
            if (op < 0) {
                throw new IllegalArgumentException("membership program: unknown leaf op " + spec.get("op"));
            }
            field = spec.get("field").asInt();
            kind = kinds[field];
            JsonNode vs = spec.get("values");
            values = new Object[vs.size()];
            for (int i = 0; i < values.length; i++) {
                values[i] = parse(vs.get(i).asText(), kind);
            }
            set = op == IN || op == NOT_IN ? new HashSet<>(List.of(values)) : null;
        }

        static Object parse(String text, int kind) {
            switch (kind) {
                case LONG:
                case MICROS:
                    return Long.parseLong(text);
                case DOUBLE:
                    return Double.parseDouble(text);
                case DECIMAL:
                    return new BigDecimal(text);
                case BOOL:
                    return Boolean.parseBoolean(text);
                default:
                    return text;
            }
        }

        /** The row's value as the leaf compares it: String, Long, Double, BigDecimal, Boolean or Seq. */
        static Object value(Object v, int kind) {
            if (v == null) {
                return null;
            }
            switch (kind) {
                case LONG:
                case MICROS:
                    return ((Number) v).longValue();
                case DOUBLE:
                    return ((Number) v).doubleValue();
                default:
                    return v;
            }
        }

        boolean test(Object v) {
            if (v == null) {
                return op == NE || op == NOT_IN || op == NULL;
            }
            switch (op) {
                case NULL:
                    return false;
                case NOT_NULL:
                    return true;
                case EQ:
                    return compare(v, values[0]) == 0;
                case NE:
                    return compare(v, values[0]) != 0;
                case GT:
                    return compare(v, values[0]) > 0;
                case GTE:
                    return compare(v, values[0]) >= 0;
                case LT:
                    return compare(v, values[0]) < 0;
                case LTE:
                    return compare(v, values[0]) <= 0;
                case BETWEEN:
                    return compare(v, values[0]) >= 0 && compare(v, values[1]) <= 0;
                case IN:
                case NOT_IN: {
                    boolean found;
                    if (kind == DOUBLE || kind == DECIMAL) {   // by value: 0.0 = -0.0, 1.0 = 1.00
                        found = false;
                        for (Object x : values) {
                            if (compare(v, x) == 0) {
                                found = true;
                                break;
                            }
                        }
                    } else {
                        found = set.contains(v);
                    }
                    return found == (op == IN);
                }
                case STARTS:
                    return ((String) v).startsWith((String) values[0]);
                case ENDS:
                    return ((String) v).endsWith((String) values[0]);
                case CONTAINS:
                    return ((String) v).contains((String) values[0]);
                case HAS: {
                    Seq<?> items = (Seq<?>) v;
                    for (int i = 0, n = items.length(); i < n; i++) {
                        if (values[0].equals(items.apply(i))) {
                            return true;
                        }
                    }
                    return false;
                }
                default:
                    throw new IllegalStateException("membership program: leaf op " + op);
            }
        }

        int compare(Object v, Object literal) {
            return compare(kind, v, literal);
        }

        /** Two values of a field of ``kind``, in Spark's order for numbers; strings and booleans: 0 when equal, else 1. */
        static int compare(int kind, Object v, Object literal) {
            switch (kind) {
                case LONG:
                case MICROS:
                    return Long.compare((Long) v, (Long) literal);
                case DOUBLE: {
                    double x = (Double) v;
                    double y = (Double) literal;
                    return x == y ? 0 : Double.compare(x, y);   // Spark's SQLOrderingUtil.compareDoubles
                }
                case DECIMAL:
                    return ((BigDecimal) v).compareTo((BigDecimal) literal);
                default:
                    return v.equals(literal) ? 0 : 1;   // strings and booleans: only (in)equality
            }
        }
    }

    Members(String json) {
        JsonNode p = RenderOffer.readSpec(json, "the membership program");
        bits = p.get("bits").asInt();
        JsonNode ins = p.get("instructions");
        int n = ins.size();
        op = new int[n];
        arg = new int[n];
        argEnd = new int[n];
        int total = 0;
        for (JsonNode i : ins) {
            total += i.size() - 1;
        }
        args = new int[total];
        int at = 0;
        for (int i = 0; i < n; i++) {
            JsonNode in = ins.get(i);
            op[i] = in.get(0).asInt();
            if (op[i] == AND || op[i] == OR) {
                arg[i] = at;
                for (int k = 1; k < in.size(); k++) {
                    int a = in.get(k).asInt();
                    if (a >= i) {
                        throw new IllegalArgumentException("membership program: instruction " + i + " reads " + a);
                    }
                    args[at++] = a;
                }
                argEnd[i] = at;
            } else {
                arg[i] = in.get(1).asInt();
            }
        }
        outputs = RenderOffer.ints(p, "outputs");
        JsonNode fs = p.get("fields");
        kinds = new int[fs.size()];
        for (int f = 0; f < kinds.length; f++) {
            kinds[f] = KINDS.indexOf(fs.get(f).asText());
            if (kinds[f] < 0) {
                throw new IllegalArgumentException("membership program: unknown field kind " + fs.get(f));
            }
        }
        JsonNode as = p.get("atoms");
        bitOf = new int[as.size()];
        leaves = new Leaf[as.size()];
        for (int a = 0; a < bitOf.length; a++) {
            JsonNode atom = as.get(a);
            if (atom.has("bit")) {
                bitOf[a] = atom.get("bit").asInt();
            } else {
                bitOf[a] = -1;
                leaves[a] = new Leaf(atom, kinds);
            }
        }
    }

    final int[] kinds;     // per field of the struct

    // Guards: a definition that is a clause, or an `and` of clauses, one of which is an
    // equality (eq/in on a string, integer, timestamp or boolean field) or a prefix/suffix
    // match is evaluated only for the rows whose field value finds it in that clause's table:
    // of a thousand feeds each scoped by its own seller list or id suffix, a row looks up its
    // value once per field and evaluates the few feeds it can be in, not the thousand.
    static final int G_EQ = 0;
    static final int G_ENDS = 1;
    static final int G_STARTS = 2;

    /** The definitions guarded by clauses of one mode on one field, by the clause's value. */
    static final class Guard implements java.io.Serializable {
        private static final long serialVersionUID = 1L;
        final int field;
        final int mode;
        final HashMap<Object, int[]> byValue = new HashMap<>();
        int[] lengths = new int[0];   // G_ENDS / G_STARTS: the values' distinct lengths

        Guard(int field, int mode) {
            this.field = field;
            this.mode = mode;
        }

        void add(Object value, int definition) {
            int[] had = byValue.get(value);
            int[] now = had == null ? new int[1] : java.util.Arrays.copyOf(had, had.length + 1);
            now[now.length - 1] = definition;
            byValue.put(value, now);
            if (mode != G_EQ) {
                int n = ((String) value).length();
                if (java.util.Arrays.stream(lengths).noneMatch(l -> l == n)) {
                    lengths = java.util.Arrays.copyOf(lengths, lengths.length + 1);
                    lengths[lengths.length - 1] = n;
                }
            }
        }
    }

    // Built where the rows are (``prepare``), not shipped with every task: range tables can be large.
    private transient Guard[] guards;
    private transient Range[] ranges;
    private transient int[] unguarded;     // the definitions no guard lists, ascending: every row evaluates them

    /** Range guards: a definition not guarded by an equality or a prefix/suffix, whose clauses
     * bound one number or timestamp field (gt/gte/lt/lte/between, and-ed: a price band), is
     * evaluated only for the rows whose value lies in its interval. The field's distinct bounds
     * cut the line into elementary slots (each bound, and the open gaps between and around
     * them); one binary search finds the row's slot, which lists the definitions covering it. */
    static final class Range {
        final int field;
        final int kind;
        Object[] points;     // distinct bounds, ascending (Spark's order: NaN above every number)
        int[][] slots;       // 2 * points + 1 slots: gap 0, point 0, gap 1, ..., point k-1, gap k

        Range(int field, int kind) {
            this.field = field;
            this.kind = kind;
        }

        /** The slot of value ``v``. */
        int slot(Object v) {
            int lo = 0;
            int hi = points.length;
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                int c = Leaf.compare(kind, points[mid], v);
                if (c < 0) {
                    lo = mid + 1;
                } else if (c > 0) {
                    hi = mid;
                } else {
                    return 2 * mid + 1;
                }
            }
            return 2 * lo;
        }
    }

    /** Slot entries kept per Members instance at most; the widest intervals beyond it stay unguarded. */
    static final int RANGE_ENTRIES = 1 << 20;

    /** An interval of one field: the and of a definition's range clauses on it (null bound: none). */
    static final class Interval {
        final int definition;
        Object lo;
        boolean loOpen;
        Object hi;
        boolean hiOpen;
        int first;
        int last;

        Interval(int definition) {
            this.definition = definition;
        }

        /** The number of slots it covers (0: empty). */
        int width() {
            return Math.max(0, last - first + 1);
        }

        void narrow(Leaf leaf) {
            switch (leaf.op) {
                case GT:
                case GTE:
                    low(leaf.values[0], leaf.op == GT, leaf.kind);
                    break;
                case LT:
                case LTE:
                    high(leaf.values[0], leaf.op == LT, leaf.kind);
                    break;
                default:   // BETWEEN
                    low(leaf.values[0], false, leaf.kind);
                    high(leaf.values[1], false, leaf.kind);
            }
        }

        private void low(Object value, boolean open, int kind) {
            int c = lo == null ? -1 : Leaf.compare(kind, lo, value);
            if (c < 0 || c == 0 && open) {
                lo = value;
                loOpen = open;
            }
        }

        private void high(Object value, boolean open, int kind) {
            int c = hi == null ? 1 : Leaf.compare(kind, hi, value);
            if (c > 0 || c == 0 && open) {
                hi = value;
                hiOpen = open;
            }
        }
    }

    static boolean isRange(Leaf leaf) {
        return (leaf.op == GT || leaf.op == GTE || leaf.op == LT || leaf.op == LTE || leaf.op == BETWEEN)
                && (leaf.kind == LONG || leaf.kind == MICROS || leaf.kind == DOUBLE || leaf.kind == DECIMAL);
    }

    static int guardMode(Leaf leaf) {
        if ((leaf.op == EQ || leaf.op == IN) && leaf.kind != DOUBLE && leaf.kind != DECIMAL && leaf.kind != STRINGS) {
            return G_EQ;   // doubles and decimals: equal values can differ as keys (0.0, -0.0; 1.0, 1.00)
        }
        return leaf.op == ENDS ? G_ENDS : leaf.op == STARTS ? G_STARTS : -1;
    }

    /** Past this many definitions sharing its values, an equality or prefix/suffix is a worse
     * guard than a range clause of the same definition. */
    static final int SHARED_GUARD = 16;

    /** The guard clause of definition ``d`` (an atom index), or -1. Of its equalities and
     * prefix/suffix clauses, the one whose values the fewest definitions share (``shared``,
     * by field, mode and value; an equality on a tie): a value that every in-stock feed lists
     * finds them all in every in-stock row, a seller slice or an id suffix finds a few. -1 when
     * it has none, or when even the best is shared by more than SHARED_GUARD definitions and
     * ``d`` has a range clause, which buildRanges then guards it by. */
    int guardOf(int d, HashMap<List<Object>, Integer> shared) {
        int best = -1;
        int bestCost = Integer.MAX_VALUE;
        boolean bestEq = false;
        boolean ranged = false;
        for (int c : operands(d)) {
            if (op[c] != ATOM || bitOf[arg[c]] >= 0) {
                continue;
            }
            Leaf leaf = leaves[arg[c]];
            ranged |= isRange(leaf);
            int mode = guardMode(leaf);
            if (mode < 0) {
                continue;
            }
            int cost = 0;
            for (Object v : leaf.values) {
                cost = Math.max(cost, shared.getOrDefault(List.of(leaf.field, mode, v), 0));
            }
            boolean eq = mode == G_EQ;
            if (cost < bestCost || cost == bestCost && eq && !bestEq) {
                best = arg[c];
                bestCost = cost;
                bestEq = eq;
            }
        }
        return best >= 0 && bestCost > SHARED_GUARD && ranged ? -1 : best;
    }

    /** Per (field, guard mode, value): how many definitions have a clause that could guard them by it. */
    HashMap<List<Object>, Integer> sharedGuardValues() {
        HashMap<List<Object>, Integer> shared = new HashMap<>();
        for (int d = 0; d < outputs.length; d++) {
            java.util.HashSet<List<Object>> mine = new java.util.HashSet<>();
            for (int c : operands(d)) {
                int mode = op[c] == ATOM && bitOf[arg[c]] < 0 ? guardMode(leaves[arg[c]]) : -1;
                if (mode >= 0) {
                    Leaf leaf = leaves[arg[c]];
                    for (Object v : leaf.values) {
                        mine.add(List.of(leaf.field, mode, v));
                    }
                }
            }
            for (List<Object> key : mine) {
                shared.merge(key, 1, Integer::sum);
            }
        }
        return shared;
    }

    /** The instructions definition ``d`` is the and of: itself when it is a clause, none when an or/not. */
    int[] operands(int d) {
        int top = outputs[d];
        if (op[top] == AND) {
            return java.util.Arrays.copyOfRange(args, arg[top], argEnd[top]);
        }
        return op[top] == ATOM ? new int[] {top} : new int[0];
    }

    /** Build the guards and range tables, once per instance, where the rows are evaluated. */
    synchronized void prepare() {
        if (unguarded != null) {
            return;
        }
        boolean[] marks = new boolean[outputs.length];
        guards = buildGuards(marks);
        ranges = buildRanges(marks);
        unguarded = java.util.stream.IntStream.range(0, marks.length).filter(d -> !marks[d]).toArray();
    }

    private Range[] buildRanges(boolean[] marks) {
        java.util.LinkedHashMap<Integer, java.util.List<Interval>> byField = new java.util.LinkedHashMap<>();
        for (int d = 0; d < outputs.length; d++) {
            if (marks[d]) {
                continue;
            }
            Interval interval = null;
            int field = -1;
            for (int c : operands(d)) {
                if (op[c] != ATOM || bitOf[arg[c]] >= 0 || !isRange(leaves[arg[c]])) {
                    continue;
                }
                Leaf leaf = leaves[arg[c]];
                if (field < 0) {
                    field = leaf.field;
                    interval = new Interval(d);
                }
                if (leaf.field == field) {
                    interval.narrow(leaf);
                }
            }
            if (interval != null) {
                byField.computeIfAbsent(field, k -> new java.util.ArrayList<>()).add(interval);
            }
        }
        java.util.List<Range> out = new java.util.ArrayList<>();
        long budget = RANGE_ENTRIES;
        for (java.util.Map.Entry<Integer, java.util.List<Interval>> e : byField.entrySet()) {
            int field = e.getKey();
            Range r = new Range(field, kinds[field]);
            java.util.TreeSet<Object> points = new java.util.TreeSet<>((a, b) -> Leaf.compare(r.kind, a, b));
            for (Interval i : e.getValue()) {
                if (i.lo != null) {
                    points.add(i.lo);
                }
                if (i.hi != null) {
                    points.add(i.hi);
                }
            }
            r.points = points.toArray();
            int slots = 2 * r.points.length + 1;
            for (Interval i : e.getValue()) {
                i.first = i.lo == null ? 0 : r.slot(i.lo) + (i.loOpen ? 1 : 0);
                i.last = i.hi == null ? slots - 1 : r.slot(i.hi) - (i.hiOpen ? 1 : 0);
            }
            java.util.List<Interval> narrowFirst = new java.util.ArrayList<>(e.getValue());
            narrowFirst.sort(java.util.Comparator.comparingInt(Interval::width));
            int[] counts = new int[slots];
            java.util.List<Interval> kept = new java.util.ArrayList<>();
            for (Interval i : narrowFirst) {
                if (i.width() > budget) {
                    break;
                }
                budget -= i.width();
                kept.add(i);
                marks[i.definition] = true;
                for (int k = i.first; k <= i.last; k++) {
                    counts[k]++;
                }
            }
            if (kept.isEmpty()) {
                continue;
            }
            kept.sort(java.util.Comparator.comparingInt(i -> i.definition));
            r.slots = new int[slots][];
            for (int k = 0; k < slots; k++) {
                r.slots[k] = new int[counts[k]];
                counts[k] = 0;
            }
            for (Interval i : kept) {
                for (int k = i.first; k <= i.last; k++) {
                    r.slots[k][counts[k]++] = i.definition;
                }
            }
            out.add(r);
        }
        return out.toArray(new Range[0]);
    }

    private Guard[] buildGuards(boolean[] marks) {
        java.util.LinkedHashMap<Integer, Guard> byKey = new java.util.LinkedHashMap<>();
        HashMap<List<Object>, Integer> shared = sharedGuardValues();
        for (int d = 0; d < outputs.length; d++) {
            int atom = guardOf(d, shared);
            if (atom < 0) {
                continue;
            }
            Leaf leaf = leaves[atom];
            int mode = guardMode(leaf);
            Guard g = byKey.computeIfAbsent(leaf.field * 3 + mode, k -> new Guard(leaf.field, mode));
            for (Object v : new java.util.LinkedHashSet<>(List.of(leaf.values))) {
                g.add(v, d);
            }
            marks[d] = true;
        }
        return byKey.values().toArray(new Guard[0]);
    }

    /** Register ``json``'s program in ``spark`` as the UDF ``name``. */
    public static void register(SparkSession spark, String name, String json) {
        spark.udf().register(name, new Members(json), DataTypes.createArrayType(DataTypes.IntegerType, false));
    }

    /** One row: its clause words, its fields (read when a leaf needs them), and each
     * instruction's value so far (0 not yet computed, 1 false, 2 true). */
    static final class State {
        long[] words = new long[0];
        Row row;
        final Object[] fields;
        final boolean[] read;
        final byte[] values;
        final boolean[] found;    // per definition: a guard found it in this row
        final int[] marked;       // the definitions found, to clear ``found``
        final int[] hit;

        State(int fields, int instructions, int definitions) {
            this.fields = new Object[fields];
            this.read = new boolean[fields];
            this.values = new byte[instructions];
            this.found = new boolean[definitions];
            this.marked = new int[definitions];
            this.hit = new int[definitions];
        }
    }

    private transient ThreadLocal<State> scratch;

    @Override
    public int[] call(Seq<Object> words, Row fields, Long barrier) {
        if (scratch == null) {
            prepare();
            scratch = ThreadLocal.withInitial(() -> new State(kinds.length, op.length, outputs.length));
        }
        State s = scratch.get();
        int n = words.length();
        if (s.words.length != n) {
            s.words = new long[n];
        }
        for (int i = 0; i < n; i++) {
            Object v = words.apply(i);
            s.words[i] = v == null ? 0L : (Long) v;
        }
        s.row = fields;
        java.util.Arrays.fill(s.read, false);
        return evaluate(s);
    }

    /** The definitions the row of ``s`` satisfies. */
    int[] evaluate(State s) {
        java.util.Arrays.fill(s.values, (byte) 0);
        boolean[] found = s.found;
        int marked = 0;
        for (Guard g : guards) {
            Object v = field(s, g.field);
            if (v == null) {
                continue;   // every guard clause is false on null
            }
            if (g.mode == G_EQ) {
                marked = mark(g.byValue.get(v), found, s.marked, marked);
                continue;
            }
            String text = (String) v;
            int n = text.length();
            for (int length : g.lengths) {
                if (length <= n) {
                    String part = g.mode == G_ENDS ? text.substring(n - length) : text.substring(0, length);
                    marked = mark(g.byValue.get(part), found, s.marked, marked);
                }
            }
        }
        for (Range r : ranges) {
            Object v = field(s, r.field);
            if (v != null) {   // every range clause is false on null
                marked = mark(r.slots[r.slot(v)], found, s.marked, marked);
            }
        }
        // the unguarded definitions and those a guard found, not a walk over every definition:
        // of a thousand guarded feeds a row is in a few
        int[] hit = s.hit;
        int count = 0;
        for (int d : unguarded) {
            if (value(outputs[d], s)) {
                hit[count++] = d;
            }
        }
        for (int i = 0; i < marked; i++) {
            int d = s.marked[i];
            found[d] = false;
            if (value(outputs[d], s)) {
                hit[count++] = d;
            }
        }
        if (marked > 0 && count > 1) {   // the unguarded hits alone are ascending already
            java.util.Arrays.sort(hit, 0, count);
        }
        return java.util.Arrays.copyOf(hit, count);
    }

    private static int mark(int[] definitions, boolean[] found, int[] marked, int count) {
        if (definitions != null) {
            for (int d : definitions) {
                if (!found[d]) {
                    found[d] = true;
                    marked[count++] = d;
                }
            }
        }
        return count;
    }

    /** Field ``f`` of the row, converted once per row. */
    private Object field(State s, int f) {
        if (!s.read[f]) {
            s.fields[f] = Leaf.value(s.row.get(f), kinds[f]);
            s.read[f] = true;
        }
        return s.fields[f];
    }

    private boolean value(int i, State s) {
        byte[] values = s.values;
        byte known = values[i];
        if (known != 0) {
            return known == 2;
        }
        boolean v;
        switch (op[i]) {
            case ATOM: {
                int clause = arg[i];
                int bit = bitOf[clause];
                if (bit >= 0) {
                    v = (s.words[bit / bits] >>> (bit % bits) & 1L) != 0;
                } else {
                    Leaf leaf = leaves[clause];
                    v = leaf.test(field(s, leaf.field));
                }
                break;
            }
            case AND: {
                v = true;
                for (int k = arg[i]; k < argEnd[i] && v; k++) {
                    v = value(args[k], s);
                }
                break;
            }
            case OR: {
                v = false;
                for (int k = arg[i]; k < argEnd[i] && !v; k++) {
                    v = value(args[k], s);
                }
                break;
            }
            case NOT:
                v = !value(arg[i], s);
                break;
            case CONST:
                v = arg[i] != 0;
                break;
            default:
                throw new IllegalStateException("membership program: opcode " + op[i]);
        }
        values[i] = (byte) (v ? 2 : 1);
        return v;
    }
}
