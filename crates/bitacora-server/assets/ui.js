// bitacora viewer: small enhancements over server-rendered pages. Everything works without
// this file; with it, times show in the reader's timezone, the list can follow new events
// live, proofs copy with one click, and a running verification reports its progress.
// No inline script is allowed by the page's Content-Security-Policy: all behaviour is here.
(function () {
  "use strict";

  var hasIntl = typeof Intl !== "undefined" && Intl.DateTimeFormat;
  var absFmt = hasIntl ? new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  }) : null;
  var fullFmt = hasIntl ? new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  }) : null;
  var relFmt = (typeof Intl !== "undefined" && Intl.RelativeTimeFormat)
    ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

  function relative(date) {
    if (!relFmt) return "";
    var s = (date.getTime() - Date.now()) / 1000;
    var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
                 ["hour", 3600], ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(s) >= units[i][1] || units[i][0] === "second") {
        return relFmt.format(Math.round(s / units[i][1]), units[i][0]);
      }
    }
    return "";
  }

  // <time datetime data-local>: absolute time in the reader's zone, plus "3 minutes ago".
  function localize(root) {
    var times = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      if (!t.hasAttribute("data-utc")) t.setAttribute("data-utc", t.textContent);
      var fmt = t.hasAttribute("data-full") ? fullFmt : absFmt;
      if (fmt) t.textContent = fmt.format(d);
      t.title = t.getAttribute("data-utc");
      var rel = t.nextElementSibling;
      if (!rel || !rel.classList.contains("rel")) {
        rel = document.createElement("span");
        rel.className = "rel";
        t.parentNode.insertBefore(rel, t.nextSibling);
      }
      rel.textContent = relative(d);
    }
  }

  // Theme: follow the system, or a choice kept in localStorage.
  function setupTheme() {
    var btn = document.getElementById("theme-toggle");
    if (!btn) return;
    var root = document.documentElement;
    var order = ["system", "light", "dark"];
    function current() { return root.getAttribute("data-theme") || "system"; }
    function label() {
      var c = current();
      btn.title = "Theme: " + (c === "system" ? "follows the system" : c) + " (click to change)";
      btn.setAttribute("aria-label", btn.title);
    }
    label();
    btn.addEventListener("click", function () {
      var next = order[(order.indexOf(current()) + 1) % order.length];
      if (next === "system") root.removeAttribute("data-theme");
      else root.setAttribute("data-theme", next);
      try {
        if (next === "system") localStorage.removeItem("bitacora-theme");
        else localStorage.setItem("bitacora-theme", next);
      } catch (e) { /* not kept */ }
      label();
    });
  }

  function setupAutosubmit() {
    var selects = document.querySelectorAll("select[data-autosubmit]");
    for (var i = 0; i < selects.length; i++) {
      selects[i].addEventListener("change", function (ev) {
        var form = ev.target.form;
        if (form) form.submit();
      });
    }
  }

  // "/" focuses the text search, as on most search pages.
  function setupShortcuts() {
    document.addEventListener("keydown", function (ev) {
      if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var tag = (document.activeElement && document.activeElement.tagName) || "";
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
      var box = document.querySelector("[data-search]");
      if (box) { ev.preventDefault(); box.focus(); box.select(); }
    });
  }

  function copyText(text, done) {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    done(ok);
  }

  function setupCopy() {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (ev) {
        var btn = ev.currentTarget;
        var el = document.getElementById(btn.getAttribute("data-copy"));
        if (!el) return;
        var original = btn.textContent;
        copyText(el.textContent, function (ok) {
          btn.textContent = ok ? "Copied ✓" : "Select and copy";
          if (!ok) {
            var range = document.createRange();
            range.selectNodeContents(el);
            var sel = window.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
          }
          setTimeout(function () { btn.textContent = original; }, 2000);
        });
      });
    }
  }

  // Live tail: new rows from /ui/tail (server-sent events), newest on top.
  function setupLive() {
    var toggle = document.getElementById("live-toggle");
    var tbody = document.getElementById("event-rows");
    if (!toggle || !tbody || typeof EventSource === "undefined") return;
    var status = document.getElementById("live-status");
    var source = null;
    var fresh = 0;
    var MAX_ROWS = 1000;
    function say(text) { if (status) status.textContent = text; }
    function stop(message) {
      if (source) { source.close(); source = null; }
      toggle.checked = false;
      try { sessionStorage.removeItem("bitacora-live"); } catch (e) { /* ignore */ }
      say(message || "");
    }
    function start() {
      var base = toggle.getAttribute("data-tail-url");
      var url = base + (base.indexOf("?") >= 0 ? "&" : "?") + "from=" +
        encodeURIComponent(toggle.getAttribute("data-head"));
      source = new EventSource(url);
      try { sessionStorage.setItem("bitacora-live", "1"); } catch (e) { /* ignore */ }
      say("Live: waiting for new events…");
      source.onopen = function () { say(fresh ? fresh + " new since live view started" : "Live: waiting for new events…"); };
      source.onerror = function () { if (source) say("Live: connection lost, reconnecting…"); };
      source.addEventListener("row", function (ev) {
        var seq = ev.lastEventId;
        if (tbody.querySelector('tr[data-seq="' + seq + '"]')) return;
        var tpl = document.createElement("template");
        tpl.innerHTML = ev.data;
        var row = tpl.content.querySelector("tr");
        if (!row) return;
        row.classList.add("fresh");
        tbody.insertBefore(row, tbody.firstChild);
        localize(row);
        var next = Number(seq) + 1;
        if (next > Number(toggle.getAttribute("data-head"))) toggle.setAttribute("data-head", String(next));
        while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
        var wrap = tbody.closest(".table-wrap");
        if (wrap) wrap.hidden = false;
        var empty = document.getElementById("empty-state");
        if (empty) empty.hidden = true;
        fresh += 1;
        say(fresh + (fresh === 1 ? " new event" : " new events") + " since live view started");
      });
      source.addEventListener("overflow", function () {
        say("Many new events arrived at once: reload the page to see them all.");
      });
      source.addEventListener("end", function () {
        stop("Live view stopped: your session ended. Sign in again.");
      });
    }
    toggle.addEventListener("change", function () {
      if (toggle.checked) start(); else stop("Live view off.");
    });
    var wanted = false;
    try { wanted = sessionStorage.getItem("bitacora-live") === "1"; } catch (e) { /* ignore */ }
    if (wanted) { toggle.checked = true; start(); }
  }

  // "Verify now": poll the running verification and reload when it is done.
  function setupVerify() {
    var box = document.getElementById("verify-progress");
    if (!box || box.hidden) return;
    var bar = document.getElementById("verify-bar");
    var text = document.getElementById("verify-text");
    var url = box.getAttribute("data-url");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) { text.textContent = "Cannot read the progress; reload the page."; return; }
          if (!p.running) { window.location.reload(); return; }
          var what = p.tenant ? "tenant " + p.tenant : "another tenant";
          var step = p.steps > 1 ? " (" + p.step + " of " + p.steps + ")" : "";
          if (p.total > 0) {
            bar.max = p.total;
            bar.value = p.done;
            text.textContent = "Verifying " + what + step + ": " + p.done.toLocaleString() +
              " of " + p.total.toLocaleString() + " events";
          } else {
            bar.removeAttribute("value");
            text.textContent = "Verifying " + what + step + "…";
          }
          setTimeout(poll, 600);
        })
        .catch(function () { setTimeout(poll, 2000); });
    }
    poll();
  }

  function init() {
    localize(document);
    setInterval(function () { localize(document); }, 30000);
    setupTheme();
    setupAutosubmit();
    setupShortcuts();
    setupCopy();
    setupLive();
    setupVerify();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
