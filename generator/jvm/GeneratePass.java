package feedgen.jvm;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
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
import org.apache.spark.sql.classic.Dataset;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.Decimal;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;

/**
 * The JVM half of the single pass (generator/generate.py, ``_jvm_pass``), for plans whose
 * outputs all use built-in offer templates: each task renders its offers once per
 * renderer that one of their targets uses (RenderOffer's rules), appends the items to one
 * buffer per target, and writes the buffers as gzip-member part files, exactly as the
 * Python path's render_partition does. Its rows are the Python path's: ``part`` rows
 * (one per file written), ``stat`` rows (one per target and task) and ``snap`` rows for
 * the items of targets with events.
 *
 * Input columns, in this order: key, offer_id, title, description, link, image_link,
 * availability, stock, price, sale_price, effective_price (struct(amount, currency)),
 * condition, brand, gtin, mpn, category path, product name, product brand, product gtin,
 * then the indices of the definitions the row matches (array of int) unless the plan says
 * ``matches: false``, then one string column per lookup of the plan: ``lookups[n]`` maps a
 * value of column n to the definitions that take the rows with that value (an eq/in on one
 * field, shared by many definitions: one hash probe per row instead of a join).
 */
public final class GeneratePass implements FlatMapFunction<Iterator<InternalRow>, Row> {

    private static final long serialVersionUID = 1L;
    static final StructType OUT = new StructType()
            .add("kind", DataTypes.StringType).add("target", DataTypes.IntegerType)
            .add("key", DataTypes.StringType).add("hash", DataTypes.StringType)
            .add("payload", DataTypes.StringType).add("info", DataTypes.StringType);
    static final ObjectMapper JSON = new ObjectMapper();
    static final int MATCHES = 19;
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
    final RenderOffer.Program[] programs;
    final boolean[] google;
    final boolean[] payload;
    final int matchesColumn;
    final int lookupColumn;
    final HashMap<UTF8String, int[]>[] lookups;

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
        google = new boolean[renderers.size()];
        payload = new boolean[renderers.size()];
        for (int r = 0; r < renderers.size(); r++) {
            JsonNode renderer = renderers.get(r);
            programs[r] = new RenderOffer.Program(renderer.get("program").asText());
            google[r] = renderer.get("google").asBoolean();
            payload[r] = renderer.get("payload").asBoolean();
        }
        matchesColumn = plan.get("matches").asBoolean() ? MATCHES : -1;
        lookupColumn = matchesColumn < 0 ? MATCHES : MATCHES + 1;
        JsonNode tables = plan.get("lookups");
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
        JavaRDD<Row> rows = df.queryExecution().toRdd().toJavaRDD().mapPartitions(new GeneratePass(planJson));
        return df.sparkSession().createDataFrame(rows, OUT);
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

    static String string(InternalRow row, int i) {
        return row.isNullAt(i) ? null : row.getUTF8String(i).toString();
    }

    /** A struct(amount decimal(18,2), currency string) column, as the Python side selects it. */
    static RenderOffer.Cash cash(InternalRow row, int i) {
        if (row.isNullAt(i)) {
            return null;
        }
        InternalRow m = row.getStruct(i, 2);
        Decimal amount = m.isNullAt(0) ? null : m.getDecimal(0, 18, 2);
        return new RenderOffer.Cash(amount == null ? null : amount.toJavaBigDecimal(), string(m, 1));
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
        String key;   // of the current row, made when needed

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
            Arrays.fill(results, null);
            if (matchesColumn >= 0) {
                route(row, row.getArray(matchesColumn).toIntArray());
            }
            for (int n = 0; n < lookups.length; n++) {
                int column = lookupColumn + n;
                int[] found = row.isNullAt(column) ? null : lookups[n].get(row.getUTF8String(column));
                if (found != null) {
                    route(row, found);
                }
            }
        }

        /** Render ``row`` for, and append it to, the targets of definitions ``matches``. */
        void route(InternalRow row, int[] matches) {
            for (int m : matches) {
                for (int t : defTargets[m]) {
                    int r = rendererOf[t];
                    RenderOffer.Result result = results[r];
                    if (result == null) {
                        result = results[r] = RenderOffer.renderOffer(programs[r], google[r], payload[r],
                                string(row, 1), string(row, 2), string(row, 3), string(row, 4), string(row, 5),
                                string(row, 6), row.isNullAt(7) ? null : row.getInt(7), cash(row, 8),
                                cash(row, 9), cash(row, 10), string(row, 11), string(row, 12), string(row, 13),
                                string(row, 14), string(row, 15), string(row, 16), string(row, 17),
                                string(row, 18));
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
                if (seen[t] == 0 && renders[rendererOf[t]] == 0) {
                    continue;
                }
                Map<String, Object> info = new LinkedHashMap<>();
                info.put("candidates", seen[t]);
                info.put("renders", renders[rendererOf[t]]);
                info.put("excluded", excluded[t] == null ? Map.of() : excluded[t]);
                info.put("warnings", warned[t] == null ? Map.of() : warned[t]);
                info.put("samples", samples[t] == null ? Map.of() : samples[t]);
                info.put("nulls", nulls[t] == null ? Map.of() : nulls[t]);
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
                } finally {
                    Files.deleteIfExists(tmp);
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
