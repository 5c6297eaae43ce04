package feedgen.jvm;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.ZoneId;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.Deflater;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Alias;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.AttributeReference;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.GetStructField;
import org.apache.spark.sql.catalyst.expressions.NamedExpression;
import org.apache.spark.sql.classic.Dataset;
import org.apache.spark.sql.execution.ColumnarToRowExec;
import org.apache.spark.sql.execution.FileSourceScanExec;
import org.apache.spark.sql.execution.InputAdapter;
import org.apache.spark.sql.execution.ProjectExec;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.WholeStageCodegenExec;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.Decimal;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.vectorized.ColumnarBatch;
import org.apache.spark.unsafe.types.UTF8String;

import scala.jdk.javaapi.CollectionConverters;

/**
 * The JVM half of the single pass (generator/generate.py, ``_jvm_pass``), for plans whose
 * outputs all use built-in offer templates: each task renders its offers once per
 * renderer that one of their targets uses (RenderOffer's rules), appends the items to one
 * buffer per target, and writes the buffers as gzip-member part files, exactly as the
 * Python path's render_partition does. Its rows are the Python path's: ``part`` rows
 * (one per file written), ``stat`` rows (one per target and task) and ``snap`` rows for
 * the items of targets with events.
 *
 * Input columns: the first is the entity key (a string); the others are found by name: the
 * flavours' inputs (generator/offer_spec.py INPUTS: strings, ints and price structs with
 * amount and currency fields), the indices of the definitions the row matches (array of
 * int, named by the plan's ``matches_name``) unless the plan says ``matches: false``, and one
 * string column ``_fg_lookup<n>`` per lookup of the plan: ``lookups[n]`` maps a value of that
 * column to the definitions that take the rows with that value (an eq/in on one field,
 * shared by many definitions: one hash probe per row instead of a join). A column
 * named ``_fg_runner_up`` (array of int), found by name, lists the definitions whose
 * ``pick_one_per`` fell to this row as a runner-up; they are counted per target.
 *
 * A renderer is a built-in offer template (``program`` and ``flavour``: RenderOffer) or a
 * generic one (``generic``: RenderGeneric's spec, the aggregate paths of its ``fields``). The
 * generic ones read one column per distinct path, ``_fg_path:<path>``, found by name; a row's
 * cell of a path is written once and shared by every generic renderer that selects it. A
 * customer export (``customer``: RenderCustomer's spec) reads its string inputs the same way,
 * as ``_fg_path:<column>``. With ``membership`` (the customer pass), each row that matches a
 * definition also gives a ``member`` row: its key and the ``definition_ids`` it matches (JSON),
 * as render_partition's; generator/membership.py merges the rows of a key.
 *
 * A target with renderer -1 is rendered by the Python pass of the same run: no definition
 * of this plan routes to it, and it gets no stat row here.
 */
public final class GeneratePass implements FlatMapFunction<Iterator<InternalRow>, Row> {

    private static final long serialVersionUID = 1L;
    static final StructType OUT = new StructType()
            .add("kind", DataTypes.StringType).add("target", DataTypes.IntegerType)
            .add("key", DataTypes.StringType).add("hash", DataTypes.StringType)
            .add("payload", DataTypes.StringType).add("info", DataTypes.StringType);
    static final ObjectMapper JSON = new ObjectMapper();
    static final String LOOKUP = "_fg_lookup";
    static final String RUNNER_UP = "_fg_runner_up";
    // what Python's gzip.compress(data, 6, mtime=0) starts a member with
    static final byte[] GZIP_HEADER = {0x1f, (byte) 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};

    final String runRoot;
    final long partMax;
    final int sampleKeys;
    final String[] folders;
    final String[] fmts;
    final boolean[] events;
    final int[] rendererOf;
    final int[][] defTargets;
    final RenderOffer.Program[] programs;   // null for a generic renderer
    final RenderOffer.Flavour[] flavours;
    final RenderGeneric.Spec[] generics;   // null for a built-in offer template
    final int[][] genericSlots;            // per generic renderer: its key and fields as indices into paths
    final RenderCustomer.Spec[] customers; // a customer export (RenderCustomer), else null
    final int[][] customerSlots;           // per customer export: its inputs as indices into paths
    final String[] definitionIds;          // with membership: a ``member`` row per customer that matches
    final String[] paths;                  // every path a generic renderer reads, once
    final DataType[] pathTypes;
    final int pathBase;                    // the slot of paths[0]
    final String timeZone;                 // the session's: timestamps are written in it, as Arrow hands them to Python
    final boolean[] payload;
    final String matchesName;
    int matchesColumn = -1;
    final HashMap<UTF8String, int[]>[] lookups;
    int runnerColumn = -1;   // the row path's RUNNER_UP column, when it has one
    // The inputs every flavour reads (offer_spec.INPUTS), by name, and their types.
    final String[] inputs;
    final int[] types;
    // Where slot i (0 the key, 1..inputs the flavours' inputs, then the lookup fields, then the paths) is in
    // a row, found by name: column ords[i], and field subs[i] of that struct column of
    // widths[i] fields, or the column itself (-1). A price is a struct; money[i] = {amount,
    // currency, width}.
    final int[] ords;
    final int[] subs;
    final int[] widths;
    final int[][] money;

    @SuppressWarnings("unchecked")
    GeneratePass(String planJson) throws JsonProcessingException {
        JsonNode plan = JSON.readTree(planJson);
        runRoot = plan.get("run_root").asText();
        partMax = plan.get("part_max").asLong();
        sampleKeys = plan.get("sample_keys").asInt();
        JsonNode targets = plan.get("targets");
        int n = targets.size();
        folders = new String[n];
        fmts = new String[n];
        events = new boolean[n];
        rendererOf = new int[n];
        for (int t = 0; t < n; t++) {
            JsonNode target = targets.get(t);
            folders[t] = target.get("folder").asText();
            fmts[t] = target.get("fmt").asText();
            events[t] = target.get("events").asBoolean();
            rendererOf[t] = target.get("renderer").asInt();
        }
        JsonNode defs = plan.get("def_targets");
        defTargets = new int[defs.size()][];
        for (int d = 0; d < defs.size(); d++) {
            JsonNode ts = defs.get(d);
            defTargets[d] = new int[ts.size()];
            for (int k = 0; k < ts.size(); k++) {
                defTargets[d][k] = ts.get(k).asInt();
            }
        }
        JsonNode renderers = plan.get("renderers");
        programs = new RenderOffer.Program[renderers.size()];
        flavours = new RenderOffer.Flavour[renderers.size()];
        generics = new RenderGeneric.Spec[renderers.size()];
        genericSlots = new int[renderers.size()][];
        customers = new RenderCustomer.Spec[renderers.size()];
        customerSlots = new int[renderers.size()][];
        payload = new boolean[renderers.size()];
        RenderOffer.Flavour first = null;
        Map<String, Integer> pathIndex = new LinkedHashMap<>();
        for (int r = 0; r < renderers.size(); r++) {
            JsonNode renderer = renderers.get(r);
            payload[r] = renderer.get("payload").asBoolean();
            if (renderer.has("generic")) {
                generics[r] = new RenderGeneric.Spec(renderer.get("generic").asText());
                List<String> read = generics[r].paths();
                genericSlots[r] = new int[read.size()];
                for (int k = 0; k < read.size(); k++) {
                    genericSlots[r][k] = pathIndex.computeIfAbsent(read.get(k), x -> pathIndex.size());
                }
                continue;
            }
            if (renderer.has("customer")) {
                customers[r] = new RenderCustomer.Spec(renderer.get("customer").asText());
                String[] read = customers[r].inputs;
                customerSlots[r] = new int[read.length];
                for (int k = 0; k < read.length; k++) {
                    customerSlots[r][k] = pathIndex.computeIfAbsent(read[k], x -> pathIndex.size());
                }
                continue;
            }
            flavours[r] = new RenderOffer.Flavour(renderer.get("flavour").asText());
            programs[r] = new RenderOffer.Program(renderer.get("program").asText(), flavours[r]);
            if (first == null) {
                first = flavours[r];
            } else if (!Arrays.equals(flavours[r].inputs, first.inputs)) {
                throw new IllegalArgumentException("flavours '" + first.name + "' and '" + flavours[r].name
                        + "' read different inputs; offer_spec.INPUTS is one list for every flavour");
            }
        }
        inputs = first == null ? new String[0] : first.inputs;
        types = first == null ? new int[0] : first.types;
        paths = pathIndex.keySet().toArray(new String[0]);
        pathTypes = new DataType[paths.length];
        timeZone = plan.path("time_zone").asText("UTC");
        if (plan.path("membership").asBoolean(false)) {
            JsonNode ids = plan.get("definition_ids");
            definitionIds = new String[ids.size()];
            for (int d = 0; d < definitionIds.length; d++) {
                definitionIds[d] = ids.get(d).asText();
            }
        } else {
            definitionIds = null;
        }
        matchesName = plan.get("matches").asBoolean() ? plan.get("matches_name").asText() : null;
        JsonNode tables = plan.get("lookups");
        pathBase = 1 + inputs.length + tables.size();
        int slots = pathBase + paths.length;
        ords = new int[slots];
        subs = new int[slots];
        widths = new int[slots];
        money = new int[slots][];
        Arrays.fill(subs, -1);
        lookups = new HashMap[tables.size()];
        for (int l = 0; l < tables.size(); l++) {
            lookups[l] = new HashMap<>();
            for (Map.Entry<String, JsonNode> entry : tables.get(l).properties()) {
                int[] ids = new int[entry.getValue().size()];
                for (int k = 0; k < ids.length; k++) {
                    ids[k] = entry.getValue().get(k).asInt();
                }
                lookups[l].put(UTF8String.fromString(entry.getKey()), ids);
            }
        }
    }

    /**
     * ``df`` (the input columns above) → the pass's part, stat and snap rows. The tasks read
     * Spark's internal rows: no Row object per offer.
     */
    public static Dataset<Row> run(Dataset<Row> df, String planJson) throws JsonProcessingException {
        GeneratePass pass = new GeneratePass(planJson);
        pass.bind(df.schema());
        pass.runnerColumn = Arrays.asList(df.schema().fieldNames()).indexOf(RUNNER_UP);
        JavaRDD<Row> rows = df.queryExecution().toRdd().toJavaRDD().mapPartitions(pass);
        return df.sparkSession().createDataFrame(rows, OUT);
    }

    /** The name of slot ``i`` (1.. the inputs, then the lookups, then the paths). */
    String slotName(int i) {
        if (i >= pathBase) {
            return RenderGeneric.PATH + paths[i - pathBase];
        }
        return i <= inputs.length ? inputs[i - 1] : LOOKUP + (i - 1 - inputs.length);
    }

    /** The row path: every slot, and _matches, found by name among the columns of ``schema``. */
    void bind(StructType schema) {
        List<String> names = Arrays.asList(schema.fieldNames());
        for (int i = 1; i < ords.length; i++) {
            ords[i] = column(names, slotName(i));
            if (i <= inputs.length && types[i - 1] == RenderOffer.MONEY) {
                StructType price = (StructType) schema.fields()[ords[i]].dataType();
                money[i] = new int[] {price.fieldIndex("amount"), price.fieldIndex("currency"), price.size()};
            }
            if (i >= pathBase) {
                DataType type = schema.fields()[ords[i]].dataType();
                String problem = RenderGeneric.unsupported(type);
                if (problem != null) {
                    throw new IllegalArgumentException("GeneratePass: column '" + slotName(i) + "' holds " + problem
                            + ", which RenderGeneric does not write (generator/jvm.py routes such a template to Python)");
                }
                pathTypes[i - pathBase] = type;
            }
        }
        matchesColumn = matchesName == null ? -1 : column(names, matchesName);
    }

    /** The index of column ``name`` after the key; a name the caller did not select is an error. */
    static int column(List<String> names, String name) {
        int i = names.subList(1, names.size()).indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException("GeneratePass: no input column '" + name + "' among " + names
                    + " (generator/jvm.py offer_columns selects the inputs by their offer_spec names)");
        }
        return i + 1;
    }

    /**
     * As ``run``, reading the file scan's column batches in place, for a ``df`` that only
     * selects the inputs (columns, or fields of struct columns; no _matches) from a
     * vectorized file scan: Spark would copy every value of every row into an UnsafeRow
     * first (a fifth of a task's time). Null when ``df``'s plan is anything else.
     */
    public static Dataset<Row> runColumnar(Dataset<Row> df, String planJson) throws JsonProcessingException {
        SparkPlan node = df.queryExecution().executedPlan();
        ProjectExec project = null;
        while (!(node instanceof FileSourceScanExec)) {
            if (node instanceof ProjectExec p && project == null) {
                project = p;
            } else if (!(node instanceof WholeStageCodegenExec || node instanceof ColumnarToRowExec
                    || node instanceof InputAdapter)) {
                return null;
            }
            if (node.children().size() != 1) {
                return null;
            }
            node = node.children().head();
        }
        FileSourceScanExec scan = (FileSourceScanExec) node;
        GeneratePass pass = new GeneratePass(planJson);
        List<Attribute> output = CollectionConverters.asJava(scan.output());
        List<Expression> selected = new ArrayList<>();
        if (project == null) {
            selected.addAll(output);
        } else {
            for (NamedExpression e : CollectionConverters.asJava(project.projectList())) {
                selected.add((Expression) (Object) e);   // a Scala trait over a class: Java cannot see it is one
            }
        }
        if (!scan.supportsColumnar() || pass.matchesName != null || selected.isEmpty()) {
            return null;
        }
        // each slot's expression, found by name (the first is the key)
        List<String> names = new ArrayList<>();
        for (Expression e : selected) {
            names.add(e instanceof NamedExpression named ? named.name() : "");
        }
        for (int i = 0; i < pass.ords.length; i++) {
            int at = i == 0 ? 0 : names.subList(1, names.size()).indexOf(pass.slotName(i)) + 1;
            if (at <= 0 && i > 0) {
                return null;
            }
            Expression e = selected.get(at);
            if (e instanceof Alias alias) {
                e = alias.child();
            }
            int sub = -1;
            if (e instanceof GetStructField field) {
                sub = field.ordinal();
                e = field.child();
            }
            if (!(e instanceof AttributeReference ref)) {
                return null;
            }
            int column = -1;
            for (int o = 0; o < output.size() && column < 0; o++) {
                column = output.get(o).exprId().equals(ref.exprId()) ? o : -1;
            }
            DataType type = ref.dataType();
            if (column < 0 || sub >= 0 && !(type instanceof StructType)) {
                return null;
            }
            if (sub >= 0) {
                pass.widths[i] = ((StructType) type).size();
                type = ((StructType) type).fields()[sub].dataType();
            }
            pass.ords[i] = column;
            pass.subs[i] = sub;
            if (i >= pass.pathBase) {
                if (RenderGeneric.unsupported(type) != null) {
                    return null;
                }
                pass.pathTypes[i - pass.pathBase] = type;
                continue;
            }
            int kind = i == 0 || i > pass.inputs.length ? RenderOffer.STRING : pass.types[i - 1];
            if (kind == RenderOffer.MONEY ? sub >= 0 || !isPrice(type)
                    : !type.equals(kind == RenderOffer.INT ? DataTypes.IntegerType : DataTypes.StringType)) {
                return null;
            }
            if (kind == RenderOffer.MONEY) {
                StructType price = (StructType) type;
                pass.money[i] = new int[] {price.fieldIndex("amount"), price.fieldIndex("currency"), price.size()};
            }
        }
        JavaRDD<Row> rows = scan.executeColumnar().toJavaRDD().mapPartitions(new Batches(pass));
        return df.sparkSession().createDataFrame(rows, OUT);
    }

    /** A struct with amount decimal(18,2) and currency string, in any order among other fields. */
    static boolean isPrice(DataType type) {
        if (!(type instanceof StructType price) || !price.getFieldIndex("amount").isDefined()
                || !price.getFieldIndex("currency").isDefined()) {
            return false;
        }
        return price.apply("amount").dataType().equals(DataTypes.createDecimalType(18, 2))
                && price.apply("currency").dataType().equals(DataTypes.StringType);
    }

    /** A task over column batches: their rows, read in place (``ColumnarBatch.getRow``). */
    static final class Batches implements FlatMapFunction<Iterator<ColumnarBatch>, Row> {
        private static final long serialVersionUID = 1L;
        final GeneratePass pass;

        Batches(GeneratePass pass) {
            this.pass = pass;
        }

        @Override
        public Iterator<Row> call(Iterator<ColumnarBatch> batches) {
            return pass.call(new Iterator<InternalRow>() {
                ColumnarBatch batch;
                int next;

                @Override
                public boolean hasNext() {
                    while (batch == null || next >= batch.numRows()) {
                        if (!batches.hasNext()) {
                            return false;
                        }
                        batch = batches.next();
                        next = 0;
                    }
                    return true;
                }

                @Override
                public InternalRow next() {
                    if (!hasNext()) {
                        throw new java.util.NoSuchElementException();
                    }
                    return batch.getRow(next++);
                }
            });
        }
    }

    @Override
    public Iterator<Row> call(Iterator<InternalRow> input) {
        TaskContext context = TaskContext.get();
        return context == null ? new Task(0, 0, input)
                : new Task(context.partitionId(), context.taskAttemptId(), input);
    }

    static final int CHUNK = 256 << 10;   // below G1's humongous size: no copying, no huge arrays

    /** One target's items since its last part, in chunks. */
    static final class Buffer {
        final ArrayList<byte[]> chunks = new ArrayList<>();
        byte[] current;
        int used;
        long size;
        int items;
        int seq;

        void append(byte[] item) {
            int at = 0;
            while (at < item.length) {
                if (current == null || used == current.length) {
                    current = new byte[(int) Math.min(CHUNK, Math.max(4096, size))];   // doubling up to CHUNK
                    chunks.add(current);
                    used = 0;
                }
                int n = Math.min(item.length - at, current.length - used);
                System.arraycopy(item, at, current, used, n);
                used += n;
                at += n;
            }
            size += item.length;
            items++;
        }

        void clear() {
            chunks.clear();
            current = null;
            used = 0;
            size = 0;
            items = 0;
        }
    }

    static void count(Map<String, Long>[] into, int t, String[] values) {
        if (values.length == 0) {
            return;
        }
        if (into[t] == null) {
            into[t] = new HashMap<>();
        }
        for (String v : values) {
            into[t].merge(v, 1L, Long::sum);
        }
    }

    /** Input ``i`` of ``row`` as a UTF-8 view (no copy), or null. */
    UTF8String utf8(InternalRow row, int i) {
        int column = ords[i];
        if (row.isNullAt(column)) {
            return null;
        }
        if (subs[i] < 0) {
            return row.getUTF8String(column);
        }
        InternalRow struct = row.getStruct(column, widths[i]);
        return struct.isNullAt(subs[i]) ? null : struct.getUTF8String(subs[i]);
    }

    String string(InternalRow row, int i) {
        UTF8String value = utf8(row, i);
        return value == null ? null : value.toString();
    }

    Integer integer(InternalRow row, int i) {
        int column = ords[i];
        if (row.isNullAt(column)) {
            return null;
        }
        if (subs[i] < 0) {
            return row.getInt(column);
        }
        InternalRow struct = row.getStruct(column, widths[i]);
        return struct.isNullAt(subs[i]) ? null : struct.getInt(subs[i]);
    }

    /** The flavours' inputs of ``row``, in their order (String, Integer, Cash). */
    Object[] inputs(InternalRow row) {
        Object[] in = new Object[inputs.length];
        for (int k = 0; k < in.length; k++) {
            switch (types[k]) {
                case RenderOffer.STRING: in[k] = string(row, k + 1); break;
                case RenderOffer.INT: in[k] = integer(row, k + 1); break;
                default: in[k] = cash(row, k + 1); break;
            }
        }
        return in;
    }

    /** Path slot ``i`` of ``row`` as Python holds it (RenderGeneric.value), or null. */
    Object pathValue(InternalRow row, int i, ZoneId zone) {
        int column = ords[i];
        if (row.isNullAt(column)) {
            return null;
        }
        DataType type = pathTypes[i - pathBase];
        if (subs[i] < 0) {
            return RenderGeneric.value(row, column, type, zone);
        }
        return RenderGeneric.value(row.getStruct(column, widths[i]), subs[i], type, zone);
    }

    /** A price input: struct(amount decimal(18,2), currency string). */
    RenderOffer.Cash cash(InternalRow row, int i) {
        if (row.isNullAt(ords[i])) {
            return null;
        }
        int[] at = money[i];
        InternalRow m = row.getStruct(ords[i], at[2]);
        Decimal amount = m.isNullAt(at[0]) ? null : m.getDecimal(at[0], 18, 2);
        return new RenderOffer.Cash(amount == null ? null : amount.toJavaBigDecimal(),
                m.isNullAt(at[1]) ? null : m.getUTF8String(at[1]).toString());
    }

    static String hex(byte[] digest) {
        StringBuilder b = new StringBuilder(digest.length * 2);
        for (byte x : digest) {
            b.append(Character.forDigit((x >> 4) & 0xF, 16)).append(Character.forDigit(x & 0xF, 16));
        }
        return b.toString();
    }

    /** One task: the iterator over its output rows, filled as the input is read. */
    final class Task implements Iterator<Row> {
        final int partition;
        final long attempt;
        final Iterator<InternalRow> input;
        final ArrayDeque<Row> pending = new ArrayDeque<>();
        final Buffer[] buffers = new Buffer[folders.length];
        final boolean[] made = new boolean[folders.length];
        final long[] seen = new long[folders.length];
        final long[] runnerUps = new long[folders.length];
        final long[] renders = new long[programs.length];
        @SuppressWarnings("unchecked")
        final Map<String, Long>[] excluded = new Map[folders.length];
        @SuppressWarnings("unchecked")
        final Map<String, Long>[] warned = new Map[folders.length];
        @SuppressWarnings("unchecked")
        final Map<String, Long>[] nulls = new Map[folders.length];
        @SuppressWarnings("unchecked")
        final Map<String, List<String>>[] samples = new Map[folders.length];
        final RenderOffer.Result[] results = new RenderOffer.Result[programs.length];
        final byte[][] texts = new byte[programs.length][];
        final Deflater deflater = new Deflater(6, true);
        final MessageDigest sha;
        boolean done;
        // with membership: the ids of the definitions the current row matches, as a JSON list
        final StringBuilder members = new StringBuilder();
        String key;   // of the current row, made when needed
        Object[] values;   // the inputs of the current row, read when first rendered
        InternalRow current;
        final ZoneId zone = ZoneId.of(timeZone);
        // the current row's paths, each read and written once for every generic renderer
        final RenderGeneric.Cells cells = new RenderGeneric.Cells(paths.length) {
            @Override
            Object read(int p) {
                return pathValue(current, pathBase + p, zone);
            }
        };

        String key(InternalRow row) {
            if (key == null) {
                key = string(row, 0);
            }
            return key;
        }

        Task(int partition, long attempt, Iterator<InternalRow> input) {
            this.partition = partition;
            this.attempt = attempt;
            this.input = input;
            try {
                sha = MessageDigest.getInstance("SHA-256");
            } catch (NoSuchAlgorithmException e) {
                throw new IllegalStateException(e);
            }
        }

        @Override
        public boolean hasNext() {
            while (pending.isEmpty() && !done) {
                if (input.hasNext()) {
                    process(input.next());
                } else {
                    finish();
                }
            }
            return !pending.isEmpty();
        }

        @Override
        public Row next() {
            if (!hasNext()) {
                throw new java.util.NoSuchElementException();
            }
            return pending.poll();
        }

        void process(InternalRow row) {
            key = null;
            values = null;
            current = row;
            cells.next();
            Arrays.fill(results, null);
            members.setLength(0);
            if (matchesColumn >= 0) {
                route(row, row.getArray(matchesColumn).toIntArray());
            }
            if (runnerColumn >= 0 && !row.isNullAt(runnerColumn)) {
                for (int m : row.getArray(runnerColumn).toIntArray()) {
                    for (int t : defTargets[m]) {
                        runnerUps[t]++;
                    }
                }
            }
            for (int n = 0; n < lookups.length; n++) {
                UTF8String value = utf8(row, 1 + inputs.length + n);
                int[] found = value == null ? null : lookups[n].get(value);
                if (found != null) {
                    route(row, found);
                }
            }
            if (members.length() > 0) {
                pending.add(RowFactory.create("member", -1, key(row), null, members.append(']').toString(), null));
            }
        }

        /** The customer export ``r``'s inputs of the current row. */
        String[] customerInputs(int r) {
            int[] slots = customerSlots[r];
            String[] in = new String[slots.length];
            for (int k = 0; k < in.length; k++) {
                Object v = cells.value(slots[k]);
                in[k] = v == null ? null : v.toString();
            }
            return in;
        }

        /** Render ``row`` for, and append it to, the targets of definitions ``matches``. */
        void route(InternalRow row, int[] matches) {
            for (int m : matches) {
                if (definitionIds != null) {
                    members.append(members.length() == 0 ? '[' : ',');
                    RenderOffer.jsonString(members, definitionIds[m]);
                }
                for (int t : defTargets[m]) {
                    int r = rendererOf[t];
                    RenderOffer.Result result = results[r];
                    if (result == null) {
                        if (generics[r] != null) {
                            result = results[r] = RenderGeneric.render(generics[r], genericSlots[r], cells, payload[r]);
                        } else if (customers[r] != null) {
                            result = results[r] = RenderCustomer.render(customers[r], customerInputs(r), payload[r]);
                        } else {
                            if (values == null) {
                                values = inputs(row);
                            }
                            result = results[r] = RenderOffer.renderOffer(programs[r], flavours[r], payload[r], values);
                        }
                        texts[r] = result.text == null ? null : result.text.getBytes(StandardCharsets.UTF_8);
                        renders[r]++;
                    }
                    seen[t]++;
                    count(nulls, t, result.missing);
                    count(warned, t, result.warnings);
                    if (result.text == null) {
                        if (result.errors.length > 0) {
                            String e = result.errors[0];
                            count(excluded, t, new String[] {e});
                            if (samples[t] == null) {
                                samples[t] = new HashMap<>();
                            }
                            List<String> keys = samples[t].computeIfAbsent(e, x -> new ArrayList<>());
                            if (keys.size() < sampleKeys) {
                                keys.add(key(row));
                            }
                        }
                        continue;
                    }
                    Buffer buf = buffers[t];
                    if (buf == null) {
                        buf = buffers[t] = new Buffer();
                    }
                    buf.append(texts[r]);
                    if (events[t]) {
                        byte[] p = result.payload.getBytes(StandardCharsets.UTF_8);
                        pending.add(RowFactory.create("snap", t, key(row), hex(sha.digest(p)), result.payload, null));
                    }
                    if (buf.size >= partMax) {
                        flush(t, buf);
                    }
                }
            }
        }

        void finish() {
            done = true;
            for (int t = 0; t < buffers.length; t++) {
                if (buffers[t] != null && buffers[t].items > 0) {
                    flush(t, buffers[t]);
                }
            }
            for (int t = 0; t < folders.length; t++) {
                if (rendererOf[t] < 0 || seen[t] == 0 && renders[rendererOf[t]] == 0) {
                    continue;
                }
                Map<String, Object> info = new LinkedHashMap<>();
                info.put("candidates", seen[t]);
                info.put("renders", renders[rendererOf[t]]);
                info.put("excluded", excluded[t] == null ? Map.of() : excluded[t]);
                info.put("warnings", warned[t] == null ? Map.of() : warned[t]);
                info.put("samples", samples[t] == null ? Map.of() : samples[t]);
                info.put("nulls", nulls[t] == null ? Map.of() : nulls[t]);
                info.put("runner_ups", runnerUps[t]);
                pending.add(RowFactory.create("stat", t, null, null, null, json(info)));
            }
            deflater.end();
        }

        /** Write ``buf``'s items as the next part of target ``t``, as render_partition's flush in generate.py. */
        void flush(int t, Buffer buf) {
            byte[] member = gzip(buf);
            String name = String.format("part-%05d-%03d.%s.gz", partition, buf.seq, fmts[t]);
            Path folder = Paths.get(runRoot, folders[t]);
            try {
                if (!made[t]) {
                    Files.createDirectories(folder);
                    made[t] = true;
                }
                // temp file in the same folder + rename: a reader never sees half a file, and a
                // rerun of a killed task simply replaces it
                Path tmp = folder.resolve("." + name + "." + attempt + ".tmp");
                try {
                    Files.write(tmp, member);
                    Files.move(tmp, folder.resolve(name), StandardCopyOption.REPLACE_EXISTING,
                            StandardCopyOption.ATOMIC_MOVE);
                } catch (IOException | RuntimeException e) {
                    Files.deleteIfExists(tmp);
                    throw e;
                }
            } catch (IOException e) {
                throw new java.io.UncheckedIOException("cannot write part " + folder.resolve(name), e);
            }
            Map<String, Object> info = new LinkedHashMap<>();
            info.put("path", name);
            info.put("items", buf.items);
            info.put("bytes", member.length);
            info.put("raw_bytes", buf.size);
            info.put("sha256", hex(sha.digest(member)));
            info.put("partition", partition);
            info.put("seq", buf.seq);
            pending.add(RowFactory.create("part", t, null, null, null, json(info)));
            buf.seq++;
            buf.clear();
        }

        /** One gzip member of the buffer's bytes, as Python's gzip.compress(data, 6, mtime=0). */
        byte[] gzip(Buffer buf) {
            deflater.reset();
            CRC32 crc = new CRC32();
            byte[] out = new byte[(int) Math.min(Integer.MAX_VALUE - 64, GZIP_HEADER.length + buf.size / 4 + 1024)];
            System.arraycopy(GZIP_HEADER, 0, out, 0, GZIP_HEADER.length);
            int n = GZIP_HEADER.length;
            for (int c = 0; c <= buf.chunks.size(); c++) {
                if (c < buf.chunks.size()) {
                    byte[] chunk = buf.chunks.get(c);
                    int len = chunk == buf.current ? buf.used : chunk.length;
                    crc.update(chunk, 0, len);
                    deflater.setInput(chunk, 0, len);
                } else {
                    deflater.finish();
                }
                while (c < buf.chunks.size() ? !deflater.needsInput() : !deflater.finished()) {
                    if (n == out.length) {
                        out = Arrays.copyOf(out, out.length * 2);
                    }
                    n += deflater.deflate(out, n, out.length - n);
                }
            }
            out = Arrays.copyOf(out, n + 8);
            long crcValue = crc.getValue();
            for (int i = 0; i < 4; i++) {
                out[n + i] = (byte) (crcValue >>> (8 * i));
                out[n + 4 + i] = (byte) (buf.size >>> (8 * i));
            }
            return out;
        }
    }

    static String json(Map<String, Object> value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
