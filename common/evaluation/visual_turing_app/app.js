// Visual Turing Test reader app: one case at a time, answers kept in localStorage under the study's id, export as
// JSON and CSV. No network: the study (images as data URIs) is embedded in the page.
(function () {
  "use strict";
  var study = JSON.parse(document.getElementById("study-data").textContent);
  var cases = study.cases;
  var classes = study.questions.classes || null;
  var askConfidence = !!study.questions.confidence;
  var storage = null;
  try {
    storage = window.localStorage;
    storage.setItem(study.storage_key + ":probe", "1");
    storage.removeItem(study.storage_key + ":probe");
  } catch (e) {
    storage = null;
  }

  function $(id) { return document.getElementById(id); }

  function fresh() {
    return { study_id: study.study_id, reader: "", started: false, finished: false, position: 0, answers: {} };
  }

  function load() {
    if (!storage) { return fresh(); }
    try {
      var saved = JSON.parse(storage.getItem(study.storage_key));
      if (saved && saved.study_id === study.study_id && saved.answers) { return saved; }
    } catch (e) { /* a damaged record starts over */ }
    return fresh();
  }

  var state = load();

  function save() {
    if (storage) { storage.setItem(study.storage_key, JSON.stringify(state)); }
  }

  function answerOf(index) {
    var id = cases[index].id;
    if (!state.answers[id]) { state.answers[id] = { origin: null, "class": null, confidence: null, time: null }; }
    return state.answers[id];
  }

  function complete(index) {
    var a = state.answers[cases[index].id];
    return !!(a && a.origin && (!classes || a["class"] !== null));
  }

  function answeredCount() {
    var n = 0;
    for (var i = 0; i < cases.length; i++) { if (complete(i)) { n++; } }
    return n;
  }

  function show(screen) {
    ["screen-start", "screen-case", "screen-done"].forEach(function (s) { $(s).hidden = s !== screen; });
  }

  function button(id, question, value, label, key) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "answer";
    b.id = id;
    b.setAttribute("data-question", question);
    b.setAttribute("data-value", String(value));
    b.appendChild(document.createTextNode(label + " "));
    if (key) {
      var k = document.createElement("kbd");
      k.textContent = key;
      b.appendChild(k);
    }
    b.addEventListener("click", function () { setAnswer(question, value); });
    return b;
  }

  function setup() {
    document.title = study.title;
    $("title").textContent = study.title;
    $("n-cases").textContent = String(cases.length);
    $("window-instruction").textContent = "Display: " + study.window + ".";
    if (classes) {
      var names = classes.map(function (c) { return c.name; });
      $("class-instruction").textContent = ", and which class it shows (" + names.join(" or ") + ")";
      $("class-keys").textContent = ", " + classes.map(function (c) { return c.key + " " + c.name; }).join(", ");
      $("q-class").hidden = false;
      var prompt = names.join(" or ") + "?";
      $("q-class").querySelector(".prompt").textContent = prompt.charAt(0).toUpperCase() + prompt.slice(1);
      classes.forEach(function (c) {
        $("class-buttons").appendChild(button("class-" + c.value, "class", c.value, c.name, c.key));
      });
    }
    if (askConfidence) {
      $("q-confidence").hidden = false;
      for (var level = 1; level <= 5; level++) {
        $("confidence-buttons").appendChild(button("confidence-" + level, "confidence", level, String(level), ""));
      }
    } else {
      $("confidence-instruction").hidden = true;
      $("confidence-keys").hidden = true;
    }
    var cols = study.layout.cols || [];
    var rows = study.layout.rows || [];
    cols.forEach(function (c) { var s = document.createElement("span"); s.textContent = c; $("col-labels").appendChild(s); });
    rows.forEach(function (r) { var s = document.createElement("span"); s.textContent = r; $("row-labels").appendChild(s); });
    $("answer-real").addEventListener("click", function () { setAnswer("origin", "real"); });
    $("answer-synthetic").addEventListener("click", function () { setAnswer("origin", "synthetic"); });
    $("start").addEventListener("click", start);
    $("reader-name").addEventListener("keydown", function (e) { if (e.key === "Enter") { start(); } });
    $("next").addEventListener("click", next);
    $("back").addEventListener("click", back);
    $("review").addEventListener("click", function () {
      state.finished = false;
      state.position = cases.length - 1;
      save();
      render();
    });
    document.addEventListener("keydown", onKey);
    if (!storage) {
      $("start-message").textContent = "This browser does not allow the page to keep your answers: do not reload " +
        "or close it before you have saved the answer file.";
    }
  }

  function start() {
    var name = $("reader-name").value.trim();
    if (!name) {
      $("start-message").textContent = "Please enter your name or reader code.";
      return;
    }
    state.reader = name;
    state.started = true;
    save();
    render();
  }

  function setAnswer(question, value) {
    if ($("screen-case").hidden) { return; }
    var a = answerOf(state.position);
    if (question === "confidence" && a.confidence === value) {
      a.confidence = null;  // a second press clears the optional rating
    } else {
      a[question] = value;
    }
    a.time = new Date().toISOString();
    $("case-message").textContent = "";
    save();
    renderCase();
  }

  function next() {
    if (!complete(state.position)) {
      $("case-message").textContent = classes ? "Answer both questions first." : "Answer real or synthetic first.";
      return;
    }
    if (state.position < cases.length - 1) {
      state.position += 1;
    } else if (answeredCount() === cases.length) {
      state.finished = true;
    } else {
      for (var i = 0; i < cases.length; i++) { if (!complete(i)) { state.position = i; break; } }
      $("case-message").textContent = "Some cases have no answer yet.";
    }
    save();
    render();
  }

  function back() {
    if (state.position > 0) {
      state.position -= 1;
      save();
      render();
    }
  }

  function onKey(e) {
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if ($("screen-case").hidden) { return; }
    var key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
    var handled = true;
    if (key === "R") { setAnswer("origin", "real"); }
    else if (key === "S") { setAnswer("origin", "synthetic"); }
    else if (key === "Enter" || key === "ArrowRight") { next(); }
    else if (key === "ArrowLeft" || key === "Backspace") { back(); }
    else if (askConfidence && key >= "1" && key <= "5" && key.length === 1) { setAnswer("confidence", Number(key)); }
    else {
      handled = false;
      (classes || []).forEach(function (c) {
        if (c.key && key === c.key) { setAnswer("class", c.value); handled = true; }
      });
    }
    if (handled) { e.preventDefault(); }
  }

  function pressed(id, on) {
    var b = $(id);
    if (b) { b.setAttribute("aria-pressed", on ? "true" : "false"); }
  }

  function renderCase() {
    var c = cases[state.position];
    var a = state.answers[c.id] || {};
    var image = $("case-image");
    if (image.getAttribute("data-case") !== c.id) {
      image.src = c.image;
      image.setAttribute("data-case", c.id);
    }
    $("case-label").textContent = "Case " + (state.position + 1) + " of " + cases.length;
    pressed("answer-real", a.origin === "real");
    pressed("answer-synthetic", a.origin === "synthetic");
    (classes || []).forEach(function (k) { pressed("class-" + k.value, a["class"] === k.value); });
    for (var level = 1; level <= 5; level++) { pressed("confidence-" + level, a.confidence === level); }
    var n = answeredCount();
    $("progress-bar").style.width = (100 * n / cases.length) + "%";
    $("progress").setAttribute("aria-valuemax", String(cases.length));
    $("progress").setAttribute("aria-valuenow", String(n));
    $("progress-text").textContent = n + " / " + cases.length + " answered";
    $("back").disabled = state.position === 0;
  }

  function exported() {
    return {
      format: study.answers_format,
      version: 1,
      study_id: study.study_id,
      reader: state.reader,
      exported_at: new Date().toISOString(),
      n_cases: cases.length,
      answers: cases.map(function (c) {
        var a = state.answers[c.id] || {};
        var name = null;
        (classes || []).forEach(function (k) { if (k.value === a["class"]) { name = k.name; } });
        return {
          "case": c.id,
          origin: a.origin || null,
          "class": classes ? (a["class"] === undefined ? null : a["class"]) : null,
          class_name: name,
          confidence: a.confidence || null,
          answered_at: a.time || null
        };
      })
    };
  }

  function csvField(value) {
    var s = value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(s) ? "\"" + s.replace(/"/g, "\"\"") + "\"" : s;
  }

  function toCsv(data) {
    var lines = ["format,study_id,reader,case,origin,class,confidence"];
    data.answers.forEach(function (a) {
      lines.push([data.format, data.study_id, data.reader, a["case"], a.origin, a["class"], a.confidence]
        .map(csvField).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function link(id, text, type, name) {
    var a = $(id);
    var old = a.getAttribute("href");
    if (old && old.indexOf("blob:") === 0) { URL.revokeObjectURL(old); }
    a.href = URL.createObjectURL(new Blob([text], { type: type }));
    a.setAttribute("download", name);
  }

  function renderDone() {
    var data = exported();
    var json = JSON.stringify(data, null, 2);
    $("export-json").value = json;
    var base = "vtt_answers_" + study.study_id + "_" + state.reader.replace(/[^A-Za-z0-9_-]+/g, "_");
    link("download-json", json, "application/json", base + ".json");
    link("download-csv", toCsv(data), "text/csv", base + ".csv");
  }

  function render() {
    if (!state.started) {
      $("reader-name").value = state.reader || "";
      show("screen-start");
    } else if (state.finished) {
      renderDone();
      show("screen-done");
    } else {
      state.position = Math.max(0, Math.min(state.position, cases.length - 1));
      renderCase();
      show("screen-case");
    }
  }

  setup();
  render();
}());
