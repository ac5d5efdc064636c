// The review app's keyboard: p/f/s/c/Enter in the queue, a/b/t in pairs, ? for the key map.
// Plain JavaScript, no build step; the pages work without it (forms and buttons).
(function () {
  "use strict";
  const page = document.body.dataset.page;
  const typing = (el) => el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT" && el.type !== "radio" || el.tagName === "SELECT");
  if (page === "resubmit") {
    document.getElementById("resubmit").submit();
    return;
  }
  function pick(value) {
    const radio = document.getElementById("verdict-" + value);
    if (radio) radio.checked = true;
  }
  function submit(form) {
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.metaKey) return;
    const el = document.activeElement;
    const form = document.getElementById("label-form");
    if (typing(el)) {
      if (e.key === "Escape") el.blur();
      else if (e.key === "Enter" && e.ctrlKey && el.form) { e.preventDefault(); submit(el.form); }
      return;
    }
    if (e.ctrlKey) return;
    const keys = document.getElementById("keys");
    if (e.key === "?") { e.preventDefault(); if (keys.open) keys.close(); else keys.showModal(); return; }
    if (page === "queue" && form) {
      if (e.key === "p" || e.key === "f") { e.preventDefault(); pick(e.key === "p" ? "pass" : "fail"); }
      else if (e.key === "s") { e.preventDefault(); pick("skip"); submit(form); }
      else if (e.key === "c") { e.preventDefault(); document.getElementById("correction").focus(); }
      else if (e.key === "Enter") { e.preventDefault(); submit(form); }
    } else if (page === "pairs") {
      const button = {a: "vote-a", b: "vote-b", t: "vote-t"}[e.key];
      if (button && document.getElementById(button)) { e.preventDefault(); document.getElementById(button).click(); }
    }
  });
})();
