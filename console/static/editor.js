// feedgen console: the definition editor. Rule builder <-> YAML (converted by POST /api/v1/builder),
// validation on the exact clause while typing (POST /api/v1/validate, debounced), preview
// (POST /api/v1/preview, fast sections first), explain, save and publish. No framework.
(function () {
  "use strict";
  // console.js (window.feedgen.send) may load after this file: look it up when called
  var feedgen = { send: function (m, u, b) { return window.feedgen.send(m, u, b); } };
  var S = JSON.parse(document.getElementById("editor-state").textContent);
  var model = S.model;            // the builder's model (null: YAML view only)
  var body = S.body;              // the definition body the views agree on
  var baseVersion = S.base_version;
  var savedJson = JSON.stringify(body);
  var fields = S.fields;
  var entity = S.entity;
  var timers = {};
  var lastPreview = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "on") { Object.keys(attrs.on).forEach(function (e) { node.addEventListener(e, attrs.on[e]); }); }
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return node;
  }
  function debounce(name, ms, fn) { clearTimeout(timers[name]); timers[name] = setTimeout(fn, ms); }
  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%"; }
  var uid = 0;
  function nextId(prefix) { uid += 1; return prefix + "-" + uid; }

  // -- field metadata ------------------------------------------------------------------------
  function fieldInfo(path, list) {
    var found = null;
    (list || fields[entity].fields).forEach(function (f) { if (f.path === path) { found = f; } });
    if (found) { return found; }
    var top = path.split(".")[0];
    (list || fields[entity].fields).forEach(function (f) {
      if (f.kind === "map" && f.path === top) { found = { path: path, kind: f.value_kind, operators: f.value_operators }; }
    });
    return found || { path: path, kind: "string", operators: fields[entity].operators.string };
  }
  function history(name) {
    var found = null;
    fields[entity].histories.forEach(function (h) { if (h.path === name) { found = h; } });
    return found;
  }
  function parseValue(text, kind) {
    var t = String(text).trim();
    if (kind === "number" && /^-?\d+(\.\d+)?$/.test(t)) { return Number(t); }
    if (kind === "boolean" && (t === "true" || t === "false")) { return t === "true"; }
    return t;
  }
  function showValue(v) { return Array.isArray(v) ? v.join(", ") : (v === null || v === undefined ? "" : String(v)); }

  // -- the builder ---------------------------------------------------------------------------
  var builder = document.getElementById("builder");

  function newNode(type, listFields) {
    if (type === "group") { return { type: "group", op: "all", items: [] }; }
    if (type === "history") {
      return { type: "history", history: (fields[entity].histories[0] || {}).path || "orders", agg: "count",
               agg_field: null, op: "gte", value: 1, where: null, within_last: null };
    }
    if (type === "in_segment") { return { type: "in_segment", segment: S.segments[0] || "" }; }
    var first = (listFields || fields[entity].fields)[0];
    return { type: "field", field: first.path, op: first.operators[0], value: "" };
  }

  function render() {
    builder.textContent = "";
    if (!model) { return; }
    if (!model.where) { model.where = newNode("group"); }
    builder.appendChild(renderNode(model.where, "/where", null, function (n) { model.where = n; }));
  }

  function changed() { render(); sync(); }

  function removeButton(replace) {
    return replace ? el("button", { type: "button", "aria-label": "Remove this clause", text: "✕ Remove",
                                    on: { click: function () { replace(null); changed(); } } }) : null;
  }

  function notButton(node, replace) {
    if (!replace) { return null; }
    return el("button", { type: "button", text: "Not", "aria-label": "Negate this clause (wrap it in not)",
                          on: { click: function () { replace({ type: "not", item: node }); changed(); } } });
  }

  function renderNode(node, pointer, listFields, replace) {
    if (node.type === "group") { return renderGroup(node, pointer, listFields, replace); }
    if (node.type === "not") {
      var box = el("div", { class: "node not", "data-pointer": pointer, role: "group", "aria-label": "Not" });
      box.appendChild(el("div", { class: "row" }, [el("strong", { text: "Not:" }),
        el("button", { type: "button", text: "Remove not", on: { click: function () { replace(node.item); changed(); } } })]));
      var inner = el("div", { class: "children" });
      inner.appendChild(renderNode(node.item, pointer + "/not", listFields, function (n) {
        if (n === null) { replace(null); } else { node.item = n; }
      }));
      box.appendChild(inner);
      return box;
    }
    if (node.type === "history") { return renderHistory(node, pointer, replace); }
    if (node.type === "in_segment") { return renderSegment(node, pointer, replace); }
    return renderField(node, pointer, listFields, replace);
  }

  function renderGroup(node, pointer, listFields, replace) {
    var id = nextId("g");
    var box = el("div", { class: "node group group-" + node.op, "data-pointer": pointer, role: "group",
                          "aria-labelledby": id });
    var select = el("select", { "aria-label": "all or any", on: { change: function () { node.op = select.value; changed(); } } },
      [el("option", { value: "all", text: "all of" }), el("option", { value: "any", text: "any of" })]);
    select.value = node.op;
    box.appendChild(el("div", { class: "row" }, [el("span", { id: id, text: "Match" }), select,
      el("span", { text: "these (" + node.items.length + ")" }), notButton(node, replace), removeButton(replace)]));
    var kids = el("div", { class: "children" });
    node.items.forEach(function (child, i) {
      kids.appendChild(renderNode(child, pointer + "/" + node.op + "/" + i, listFields, function (n) {
        if (n === null) { node.items.splice(i, 1); } else { node.items[i] = n; }
      }));
    });
    box.appendChild(kids);
    var tools = el("div", { class: "tools" });
    var kinds = listFields ? [["field", "+ Field test"], ["group", "+ Group"]] :
      [["field", "+ Field test"], ["history", "+ History test"], ["in_segment", "+ In segment"], ["group", "+ Group"]];
    kinds.forEach(function (k) {
      if (k[0] === "in_segment" && !S.segments.length) { return; }
      if (k[0] === "history" && !fields[entity].histories.length) { return; }
      tools.appendChild(el("button", { type: "button", text: k[1], "aria-label": k[1].slice(2) + " in this group",
        on: { click: function () { node.items.push(newNode(k[0], listFields)); changed(); } } }));
    });
    box.appendChild(tools);
    return box;
  }

  function opSelect(ops, value, onChange, label) {
    var s = el("select", { "aria-label": label || "Operator", on: { change: function () { onChange(s.value); } } },
      ops.map(function (o) { return el("option", { value: o, text: o.replace(/_/g, " ") }); }));
    s.value = value;
    return s;
  }

  function valueInputs(node, kind, label, listId) {
    var op = node.op;
    if (op === "is_null") {
      var s = el("select", { "aria-label": label + ": missing?", on: { change: function () { node.value = s.value === "true"; sync(); } } },
        [el("option", { value: "true", text: "is missing" }), el("option", { value: "false", text: "is present" })]);
      s.value = String(node.value === true || node.value === "" ? true : node.value);
      if (node.value === "") { node.value = true; }
      return [s];
    }
    if (op === "between") {
      var pair = Array.isArray(node.value) ? node.value : ["", ""];
      var lo = el("input", { class: "value", "aria-label": label + ": from", value: showValue(pair[0]) });
      var hi = el("input", { class: "value", "aria-label": label + ": to", value: showValue(pair[1]) });
      var update = function () { node.value = [parseValue(lo.value, kind), parseValue(hi.value, kind)]; sync(); };
      lo.addEventListener("input", update); hi.addEventListener("input", update);
      return [lo, el("span", { text: "and" }), hi];
    }
    var input = el("input", { class: "value", "aria-label": label + ": value", value: showValue(node.value),
                              list: listId || null,
                              placeholder: op === "in" || op === "not_in" ? "a, b, c" : (op === "within_last" || op === "older_than" ? "30d" : "") });
    input.addEventListener("input", function () {
      if (op === "in" || op === "not_in") {
        node.value = input.value.split(",").map(function (x) { return parseValue(x, kind); }).filter(function (x) { return x !== ""; });
      } else if (op === "within_last" || op === "older_than") {
        node.value = input.value.trim();
      } else {
        node.value = parseValue(input.value, kind);
      }
      sync();
    });
    return [input];
  }

  function suggest(path, listId) {
    var list = document.getElementById(listId);
    if (!list || list.getAttribute("data-field") === path) { return; }
    list.setAttribute("data-field", path);
    feedgen.send("GET", "/api/v1/fields/" + entity + "/values?field=" + encodeURIComponent(path)).then(function (r) {
      list.textContent = "";
      ((r.data && r.data.values) || []).forEach(function (v) {
        list.appendChild(el("option", { value: String(v.value), text: fmt(v.count) + " items" }));
      });
    });
  }

  function renderField(node, pointer, listFields, replace) {
    var info = fieldInfo(node.field, listFields);
    var id = nextId("f");
    var listId = id + "-values";
    var box = el("div", { class: "node field", "data-pointer": pointer, role: "group", "aria-label": "Field test on " + node.field });
    var fieldsList = listFields ? null : entity + "-fields";
    var fieldInput = el("input", { "aria-label": "Field", value: node.field, list: fieldsList, size: 18 });
    if (listFields) {
      fieldInput = el("select", { "aria-label": "Field" }, listFields.map(function (f) { return el("option", { value: f.path, text: f.path + " (" + f.kind + ")" }); }));
      fieldInput.value = node.field;
    }
    fieldInput.addEventListener("change", function () {
      node.field = fieldInput.value.trim();
      var ops = fieldInfo(node.field, listFields).operators;
      if (ops.indexOf(node.op) < 0) { node.op = ops[0]; }
      changed();
    });
    var kindLabel = el("span", { class: "badge", title: "the field's type", text: info.kind });
    var ops = (info.operators && info.operators.length) ? info.operators : fields[entity].operators.string;
    var op = opSelect(ops, node.op, function (v) { node.op = v; if (v === "between") { node.value = ["", ""]; } changed(); });
    var row = el("div", { class: "row" }, [fieldInput, kindLabel, op].concat(valueInputs(node, info.kind, node.field, listFields ? null : listId))
      .concat([el("datalist", { id: listId }), notButton(node, replace), removeButton(replace)]));
    box.appendChild(row);
    if (!listFields) {
      row.querySelector("input.value") && row.querySelector("input.value").addEventListener("focus", function () { suggest(node.field, listId); });
    }
    return box;
  }

  function renderHistory(node, pointer, replace) {
    var h = history(node.history) || { element_fields: [], aggregates: {} };
    var box = el("div", { class: "node history", "data-pointer": pointer, role: "group", "aria-label": "History test on " + node.history });
    var name = el("select", { "aria-label": "History", on: { change: function () { node.history = name.value; node.where = null; changed(); } } },
      fields[entity].histories.map(function (x) { return el("option", { value: x.path, text: x.path }); }));
    name.value = node.history;
    var agg = el("select", { "aria-label": "Aggregate", on: { change: function () {
      node.agg = agg.value;
      if (node.agg === "exists") { node.op = null; node.value = true; node.agg_field = null; }
      else {
        node.op = node.op || "gte";
        if (node.agg === "count") { node.agg_field = null; }
        else { node.agg_field = (h.aggregates[node.agg] || { fields: [] }).fields[0] || null; }
        if (node.value === true) { node.value = 1; }
      }
      changed();
    } } }, ["count", "sum", "min", "max", "exists"].map(function (a) { return el("option", { value: a, text: a }); }));
    agg.value = node.agg;
    var parts = [el("span", { text: "History" }), name, agg];
    if (node.agg === "sum" || node.agg === "min" || node.agg === "max") {
      var af = el("select", { "aria-label": "Of field", on: { change: function () { node.agg_field = af.value; sync(); } } },
        (h.aggregates[node.agg] || { fields: [] }).fields.map(function (f) { return el("option", { value: f, text: f }); }));
      af.value = node.agg_field;
      parts.push(el("span", { text: "of" }), af);
    }
    if (node.agg === "exists") {
      var ex = el("select", { "aria-label": "Exists", on: { change: function () { node.value = ex.value === "true"; sync(); } } },
        [el("option", { value: "true", text: "exists" }), el("option", { value: "false", text: "does not exist" })]);
      ex.value = String(node.value);
      parts.push(ex);
    } else {
      var testOps = (h.aggregates[node.agg] || { test_operators: ["gte"] }).test_operators;
      parts.push(opSelect(testOps, node.op, function (v) { node.op = v; if (v === "between") { node.value = ["", ""]; } changed(); }, "Comparison"));
      var aggKind = node.agg === "count" || node.agg === "sum" ? "number" : fieldInfo(node.agg_field || "", h.element_fields).kind;
      parts = parts.concat(valueInputs(node, aggKind, "History " + node.agg));
    }
    var within = el("input", { "aria-label": "Within the last", value: node.within_last || "", placeholder: "e.g. 30d", size: 6 });
    within.addEventListener("input", function () { node.within_last = within.value.trim() || null; sync(); });
    if (h.within_last) { parts.push(el("span", { text: "within the last" }), within); }
    parts.push(notButton(node, replace), removeButton(replace));
    box.appendChild(el("div", { class: "row" }, parts));
    var whereBox = el("div", { class: "children" });
    if (node.where) {
      whereBox.appendChild(el("div", { class: "hint", text: "Only the " + node.history + " where:" }));
      whereBox.appendChild(renderNode(node.where, pointer + "/where", h.element_fields, function (n) { node.where = n; }));
    } else {
      whereBox.appendChild(el("button", { type: "button", text: "+ Only " + node.history + " where…",
        on: { click: function () { node.where = { type: "group", op: "all", items: [newNode("field", h.element_fields)] }; changed(); } } }));
    }
    box.appendChild(whereBox);
    return box;
  }

  function renderSegment(node, pointer, replace) {
    var box = el("div", { class: "node segment", "data-pointer": pointer, role: "group", "aria-label": "In segment" });
    var s = el("select", { "aria-label": "Segment", on: { change: function () { node.segment = s.value; sync(); } } },
      S.segments.map(function (x) { return el("option", { value: x, text: x }); }));
    if (S.segments.indexOf(node.segment) < 0) { s.appendChild(el("option", { value: node.segment, text: node.segment })); }
    s.value = node.segment;
    box.appendChild(el("div", { class: "row" }, [el("span", { text: "In segment" }), s, notButton(node, replace), removeButton(replace)]));
    return box;
  }

  // -- settings (the definition's other keys) ------------------------------------------------
  function getPath(obj, key) { return key.split(".").reduce(function (o, k) { return o ? o[k] : undefined; }, obj); }
  function setPath(obj, key, value) {
    var parts = key.split("."), last = parts.pop(), o = obj;
    parts.forEach(function (k) { if (!o[k] || typeof o[k] !== "object") { o[k] = {}; } o = o[k]; });
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) { delete o[last]; }
    else { o[last] = value; }
    if (parts.length && !Object.keys(o).length) { delete obj[parts[0]]; }
  }
  function fillSettings() {
    document.querySelectorAll("#settings [data-key]").forEach(function (input) {
      var v = getPath(model || body, input.getAttribute("data-key"));
      if (input.type === "checkbox") { input.checked = !!v; }
      else if (input.getAttribute("data-json")) { input.value = v === undefined ? "" : JSON.stringify(v); }
      else { input.value = showValue(v); }
    });
    document.querySelectorAll("#settings input[name=exports]").forEach(function (box) {
      box.checked = ((model || body).exports || []).indexOf(box.value) >= 0;
    });
  }
  function readSetting(input) {
    var key = input.getAttribute("data-key"), value;
    if (input.type === "checkbox") { value = input.checked ? true : null; }
    else if (input.getAttribute("data-json")) {
      try { value = input.value.trim() ? JSON.parse(input.value) : null; input.removeAttribute("aria-invalid"); }
      catch (e) { input.setAttribute("aria-invalid", "true"); return; }
    } else if (input.getAttribute("data-list")) {
      value = input.value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
    } else { value = input.value.trim(); }
    setPath(model, key, value);
    sync();
  }

  // -- the two views in step, and validation -----------------------------------------------
  var yaml = document.getElementById("yaml");
  var yamlError = document.getElementById("yaml-error");

  function sync() {
    if (!model) { return; }
    debounce("sync", 300, function () {
      feedgen.send("POST", "/api/v1/builder", { kind: S.kind, model: model }).then(function (r) {
        if (!r.ok) { showProblems([{ pointer: "", message: r.data.error }]); return; }
        body = r.data.body;
        if (document.activeElement !== yaml) { yaml.value = r.data.yaml; }
        validate();
      });
    });
  }

  function fromYaml() {
    debounce("yaml", 400, function () {
      feedgen.send("POST", "/api/v1/builder", { kind: S.kind, yaml: yaml.value }).then(function (r) {
        if (!r.ok) { yamlError.hidden = false; yamlError.textContent = r.data.error; return; }
        yamlError.hidden = true;
        body = r.data.body;
        if (r.data.model) { model = r.data.model; render(); fillSettings(); }
        var note = document.getElementById("builder-note");
        if (note) { note.textContent = r.data.note || ""; note.hidden = !r.data.note; }
        validate();
      });
    });
  }

  function validate() {
    if (!S.can_edit) { return; }
    feedgen.send("POST", "/api/v1/validate", { kind: S.kind, body: body }).then(function (r) {
      if (r.ok) { showProblems(r.data.errors || []); }
    });
  }

  function showProblems(errors) {
    document.querySelectorAll(".leaf-error").forEach(function (n) { n.remove(); });
    document.querySelectorAll(".node.has-error").forEach(function (n) { n.classList.remove("has-error"); });
    document.querySelectorAll(".node [aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
    var list = document.getElementById("problems");
    list.textContent = "";
    if (!errors.length) { list.appendChild(el("p", { class: "pass", text: "✔ Valid" })); return; }
    list.appendChild(el("p", { class: "breach", text: "✖ " + errors.length + " problem" + (errors.length > 1 ? "s" : "") }));
    errors.forEach(function (e) {
      var target = nodeFor(e.pointer || "");
      var message = el("p", { class: "leaf-error", role: "alert" }, [
        el("span", { text: "✖ " + e.message }), e.fix ? el("span", { class: "fix", text: " — fix: " + e.fix }) : null]);
      if (target) {
        target.classList.add("has-error");
        target.querySelectorAll(":scope > .row input, :scope > .row select").forEach(function (i) { i.setAttribute("aria-invalid", "true"); });
        target.appendChild(message);
      } else {
        list.appendChild(el("p", { class: "leaf-error" }, [el("code", { text: e.pointer || "/" }), " " + e.message + (e.fix ? " — fix: " + e.fix : "")]));
      }
    });
  }

  function nodeFor(pointer) {
    var best = null, bestLen = -1;
    builder.querySelectorAll("[data-pointer]").forEach(function (n) {
      var p = n.getAttribute("data-pointer");
      if ((pointer === p || pointer.indexOf(p + "/") === 0) && p.length > bestLen) { best = n; bestLen = p.length; }
    });
    return best;
  }

  // -- preview -------------------------------------------------------------------------------
  function box(id) { return document.getElementById(id); }
  function computing(id, what) { box(id).textContent = ""; box(id).appendChild(el("p", { class: "computing", text: "Computing " + what + "…" })); }

  function table(caption, heads, rows) {
    var t = el("table", { class: "compact" }, [el("caption", { text: caption }),
      el("thead", {}, [el("tr", {}, heads.map(function (h) { return el("th", { scope: "col", text: h }); }))])]);
    var tb = el("tbody");
    rows.forEach(function (r) { tb.appendChild(el("tr", {}, r.map(function (c) { return el("td", { text: String(c) }); }))); });
    t.appendChild(tb);
    return t;
  }

  function previewCall(sections, extra) {
    var payload = { kind: S.kind, body: body, sections: sections };
    if (S.base) { payload.base = S.base; }
    Object.keys(extra || {}).forEach(function (k) { payload[k] = extra[k]; });
    return feedgen.send("POST", "/api/v1/preview", payload);
  }

  function runPreview() {
    var status = box("preview-status");
    status.textContent = "Computing the count…";
    ["preview-change", "preview-gates", "preview-breakdown", "preview-excluded", "preview-dependents",
     "preview-backtest", "preview-samples"].forEach(function (id) { box(id).textContent = ""; });
    box("preview-count").textContent = "…";
    var field = box("breakdown-field").value.trim();
    return previewCall(["count", "samples"]).then(function (r) {
      if (!r.ok) { box("preview-count").textContent = ""; status.textContent = "✖ " + r.data.error; if (r.data.errors) { showProblems(r.data.errors); } return; }
      if (r.data.note) { box("preview-count").textContent = ""; status.textContent = r.data.note; return; }
      showCount(r.data);
      showSamples(r.data.samples);
      status.textContent = "Computed on the aggregate of run " + r.data.run_id + " (as_of " + r.data.as_of + ").";
      computing("preview-breakdown", "the breakdown");
      var more = ["breakdown", "excluded"].concat(S.base ? ["change", "gates"] : ["gates"]);
      if (S.kind === "segment") { more.push("dependents"); }
      return previewCall(more, field ? { breakdown_field: field, change_field: field } : {}).then(function (r2) {
        if (!r2.ok) { box("preview-breakdown").textContent = "✖ " + r2.data.error; return; }
        lastPreview = r2.data;
        showBreakdown(r2.data.breakdown);
        showExcluded(r2.data.excluded, r2.data.items);
        if (r2.data.change) { box("preview-change").appendChild(changeView(r2.data.change)); }
        if (r2.data.gates) { box("preview-gates").appendChild(gatesView(r2.data.gates)); }
        if (r2.data.dependents) { showDependents(r2.data.dependents); }
        computing("preview-backtest", "the backtest");
        return previewCall(["backtest"]).then(function (r3) {
          box("preview-backtest").textContent = "";
          if (r3.ok && r3.data.backtest) { showBacktest(r3.data.backtest); }
        });
      });
    });
  }

  function showCount(d) {
    var c = box("preview-count");
    c.textContent = "";
    c.appendChild(el("span", { id: "count-value", "data-count": d.count, text: fmt(d.count) }));
    c.appendChild(el("span", { class: "hint", text: " " + (d.entity === "offer" ? "offers" : "customers") + " match" }));
  }

  function showSamples(samples) {
    var b = box("preview-samples");
    b.textContent = "";
    b.appendChild(el("h3", { text: "Samples as the platform receives them (" + samples.length + ")" }));
    samples.forEach(function (s, i) {
      var d = el("details", { class: "sample", "data-key": s.key, open: i === 0 ? "open" : null }, [el("summary", {}, [
        el("span", { class: "mono", text: s.key }), s.included ? " ✔" : " ✖ left out: " + s.errors.join(", "),
        s.warnings.length ? " ⚠ " + s.warnings.join(", ") : ""])]);
      if (s.text) { d.appendChild(el("pre", { class: "sample", text: s.text })); }
      b.appendChild(d);
    });
  }

  function showBreakdown(bd) {
    var b = box("preview-breakdown");
    b.textContent = "";
    if (!bd) { return; }
    b.appendChild(table("By " + bd.field + (bd.more ? " (top values)" : ""), [bd.field, "Items"],
      bd.values.map(function (v) { return [v.value === null ? "(none)" : v.value, fmt(v.count)]; })));
  }

  function showExcluded(ex, items) {
    var b = box("preview-excluded");
    b.textContent = "";
    if (!ex) { return; }
    if (items !== undefined) { b.appendChild(el("p", { text: fmt(items) + " items pass item validation and would be written." })); }
    if (!ex.reasons.length) { b.appendChild(el("p", { class: "pass", text: "✔ No item left out by item validation." })); return; }
    b.appendChild(table("Left out by item validation", ["Reason", "Items", "Examples"],
      ex.reasons.map(function (r) { return [r.reason, fmt(r.count), r.sample_keys.join(", ")]; })));
  }

  function changeView(ch) {
    var d = el("div", { class: "change" }, [el("h3", { text: "Change against what is published" })]);
    if (!ch.available) { d.appendChild(el("p", { class: "notice", text: ch.reason })); return d; }
    d.appendChild(el("p", { id: "change-summary" }, [
      el("span", { class: "ops-add", "data-op": "add", text: "+" + fmt(ch.ops.add) + " added" }), ", ",
      el("span", { class: "ops-remove", "data-op": "remove", text: "−" + fmt(ch.ops.remove) + " removed" }), ", ",
      el("span", { class: "ops-update", "data-op": "update", text: "~" + fmt(ch.ops.update) + " updated" }),
      " (" + fmt(ch.base_items) + " published → " + fmt(ch.items) + ", run " + ch.base_run_id + ")"]));
    ["add", "remove", "update"].forEach(function (op) {
      var rows = (ch.breakdown && ch.breakdown[op]) || [];
      if (rows.length) {
        d.appendChild(table({ add: "Added", remove: "Removed", update: "Updated" }[op] + " by " + ch.breakdown.field,
          [ch.breakdown.field, "Items"], rows.map(function (v) { return [v.value === null ? "(none)" : v.value, fmt(v.count)]; })));
      }
      var samples = (ch.samples && ch.samples[op]) || [];
      if (samples.length) {
        d.appendChild(el("p", { class: "hint", text: "Examples: " + samples.map(function (s) {
          return s.key + (s.changed.length ? " (" + s.changed.join(", ") + ")" : ""); }).join("; ") }));
      }
    });
    return d;
  }

  function gatesView(g) {
    var d = el("div", { class: "gates" }, [el("h3", { text: "Gate forecast for the next run" })]);
    if (g.status === "invalid") { d.appendChild(el("p", { class: "breach", text: g.error })); return d; }
    if (g.first_run) { d.appendChild(el("p", { text: "First run of this definition: no gate compares it yet." })); }
    if (!g.breaches.length) { d.appendChild(el("p", { class: "pass", text: "✔ No gate would hold the run." })); return d; }
    d.appendChild(el("p", { class: "breach", id: "gate-verdict", text: "⚠ The run would be held: " + g.breaches.length + " gate" + (g.breaches.length > 1 ? "s" : "") + " tripped" }));
    d.appendChild(table("Gates tripped", ["Gate", "Value", "Threshold"], g.breaches.map(function (b) {
      var v = typeof b.value === "number" && b.metric !== "empty_output" && b.value <= 1 ? pct(b.value) : b.value;
      var t = typeof b.threshold === "number" ? pct(b.threshold) : b.threshold;
      return [b.metric, v, t]; })));
    return d;
  }

  function showDependents(deps) {
    var b = box("preview-dependents");
    b.textContent = "";
    if (!deps.length) { b.appendChild(el("p", { class: "hint", text: "No published definition builds on this one." })); return; }
    b.appendChild(table("Definitions that build on this one", ["Definition", "Now", "After", "Change"],
      deps.map(function (x) { return [x.definition_id, fmt(x.count), fmt(x.count_after), (x.change >= 0 ? "+" : "") + fmt(x.change) + (x.share !== null ? " (" + pct(x.share) + ")" : "")]; })));
  }

  function showBacktest(points) {
    var b = box("preview-backtest");
    if (!points.length) { return; }
    var w = 360, h = 120, pad = 24;
    var values = [];
    points.forEach(function (p) { values.push(p.count); if (p.published) { values.push(p.published.items); } });
    var top = Math.max.apply(null, values.concat([1]));
    function x(i) { return pad + (points.length === 1 ? (w - 2 * pad) / 2 : i * (w - 2 * pad) / (points.length - 1)); }
    function y(v) { return h - pad - (v / top) * (h - 2 * pad); }
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h); svg.setAttribute("class", "chart"); svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Draft size on each retained aggregate (solid) next to the published sizes (dashed)");
    function line(get, dash) {
      var pts = [];
      points.forEach(function (p, i) { var v = get(p); if (v !== null && v !== undefined) { pts.push(x(i) + "," + y(v)); } });
      if (!pts.length) { return; }
      var pl = document.createElementNS(ns, "polyline");
      pl.setAttribute("points", pts.join(" ")); pl.setAttribute("class", "line");
      if (dash) { pl.setAttribute("stroke-dasharray", "4 3"); pl.setAttribute("style", "stroke: #9a6200"); }
      svg.appendChild(pl);
      points.forEach(function (p, i) { var v = get(p); if (v === null || v === undefined) { return; }
        var c = document.createElementNS(ns, "circle"); c.setAttribute("cx", x(i)); c.setAttribute("cy", y(v)); c.setAttribute("r", 3);
        c.setAttribute("style", dash ? "fill: #9a6200" : "fill: #1f5fbf"); svg.appendChild(c); });
    }
    line(function (p) { return p.count; }, false);
    line(function (p) { return p.published ? p.published.items : null; }, true);
    b.appendChild(el("h3", { text: "Backtest on the retained aggregates" }));
    b.appendChild(svg);
    b.appendChild(table("Sizes per aggregate", ["Run", "This draft", "Published"], points.map(function (p) {
      return [p.run_id, fmt(p.count), p.published ? fmt(p.published.items) : "–"]; })));
  }

  // -- explain -------------------------------------------------------------------------------
  function explain(ev) {
    ev.preventDefault();
    var key = box("explain-key").value.trim();
    var out = box("explain-result");
    out.textContent = "";
    out.appendChild(el("p", { class: "computing", text: "Explaining…" }));
    feedgen.send("POST", "/api/v1/explain", { kind: S.kind, body: body, key: key }).then(function (r) {
      out.textContent = "";
      if (!r.ok) { out.appendChild(el("p", { class: "error-message", text: r.data.error })); return; }
      if (r.data.note) { out.appendChild(el("p", { class: "notice", text: r.data.note })); }
      (r.data.definitions || []).forEach(function (d) {
        out.appendChild(el("p", { class: d["in"] ? "pass" : "breach", text: (d["in"] ? "✔ " : "✖ not ") + "in " + d.definition_id }));
        if (d.failing.length) {
          out.appendChild(el("ul", { class: "failing" }, d.failing.map(function (f) {
            return el("li", {}, [el("code", { text: f.clause }), ": value " + (f.actual === null ? "–" : f.actual) + (f.needs ? "" : " (must not hold)")]); })));
        }
        if (d.rendered && d.rendered.text) { out.appendChild(el("pre", { class: "sample", text: d.rendered.text })); }
        if (d.rendered && d.rendered.errors.length) { out.appendChild(el("p", { class: "error-message", text: "Left out by item validation: " + d.rendered.errors.join(", ") })); }
      });
    });
  }

  // -- save and publish ----------------------------------------------------------------------
  function save(message) {
    var status = box("save-status");
    status.textContent = "Saving…";
    var id = body.id;
    var req = S.definition
      ? feedgen.send("PUT", "/api/v1/definitions/" + encodeURIComponent(id) + "/draft", { body: body, base_version: baseVersion, message: message || "" })
      : feedgen.send("POST", "/api/v1/definitions", { kind: S.kind, body: body, message: message || "" });
    return req.then(function (r) {
      if (!r.ok) {
        status.textContent = "✖ " + r.data.error;
        if (r.data.errors) { showProblems(r.data.errors); }
        throw new Error(r.data.error);
      }
      baseVersion = r.data.number;
      savedJson = JSON.stringify(body);
      status.textContent = "✔ Saved draft v" + r.data.number + ".";
      if (!S.definition) { S.definition = { definition_id: id }; S.savedNew = true; }
      return r.data;
    });
  }

  function openPublish() {
    var dialog = box("publish-dialog");
    var summary = box("publish-summary");
    summary.textContent = "";
    summary.appendChild(el("p", { class: "computing", text: "Computing the change against what is published and the gate forecast…" }));
    box("publish-error").hidden = true;
    dialog.showModal();
    previewCall(S.base ? ["count", "change", "gates"] : ["count", "gates"]).then(function (r) {
      summary.textContent = "";
      if (!r.ok) { summary.appendChild(el("p", { class: "error-message", text: r.data.error })); return; }
      if (r.data.note) { summary.appendChild(el("p", { class: "notice", text: r.data.note })); return; }
      summary.appendChild(el("p", { text: fmt(r.data.count) + " " + (r.data.entity === "offer" ? "offers" : "customers") + " match on the aggregate of run " + r.data.run_id + "." }));
      if (r.data.change) { summary.appendChild(changeView(r.data.change)); }
      else { summary.appendChild(el("p", { text: "Not published before: every item is new." })); }
      if (r.data.gates) { summary.appendChild(gatesView(r.data.gates)); }
    });
  }

  function confirmPublish(ev) {
    ev.preventDefault();
    var message = box("publish-message").value.trim();
    var err = box("publish-error");
    if (!message) { err.hidden = false; err.textContent = "A message is required: say what changed and why."; box("publish-message").focus(); return; }
    var needsSave = JSON.stringify(body) !== savedJson || !S.definition || !(S.definition.draft_version || S.savedNew);
    var step = needsSave ? save(message) : Promise.resolve({ number: baseVersion });
    step.then(function (v) {
      return feedgen.send("POST", "/api/v1/definitions/" + encodeURIComponent(body.id) + "/publish", { version: v.number, message: message });
    }).then(function (r) {
      if (!r.ok) { err.hidden = false; err.textContent = r.data.error; return; }
      box("publish-dialog").close();
      window.location.href = "/definitions/" + encodeURIComponent(body.id) + "/versions?published=" + r.data.number;
    }).catch(function (e) { err.hidden = false; err.textContent = String(e.message || e); });
  }

  // -- wiring --------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", function () {
    render();
    fillSettings();
    document.querySelectorAll("#settings [data-key]").forEach(function (input) {
      input.addEventListener(input.type === "checkbox" || input.tagName === "SELECT" ? "change" : "input", function () { if (model) { readSetting(input); } });
    });
    document.querySelectorAll("#settings input[name=exports]").forEach(function (b) {
      b.addEventListener("change", function () {
        if (!model) { return; }
        model.exports = Array.prototype.filter.call(document.querySelectorAll("#settings input[name=exports]"), function (x) { return x.checked; })
          .map(function (x) { return x.value; });
        sync();
      });
    });
    yaml.addEventListener("input", fromYaml);
    var p = box("run-preview"); if (p) { p.addEventListener("click", runPreview); }
    box("explain-form").addEventListener("submit", explain);
    var s = box("save-draft");
    if (s) { s.addEventListener("click", function () {
      save(box("save-message").value.trim()).then(function () { if (S.savedNew) { window.location.href = "/definitions/" + encodeURIComponent(body.id); } }).catch(function () {});
    }); }
    var pub = box("publish"); if (pub) { pub.addEventListener("click", openPublish); }
    box("publish-form").addEventListener("submit", confirmPublish);
    box("publish-cancel").addEventListener("click", function () { box("publish-dialog").close(); });
    validate();
  });
})();
