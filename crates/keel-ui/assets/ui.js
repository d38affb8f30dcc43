// keel's web UI script: small, hand-written, no dependencies.
// 1. The hash router: MLflow's clients print links like
//    http://SERVER/#/experiments/1/runs/abc. Fragments never reach a server,
//    so this maps them onto keel's server-rendered pages.
// 2. Runs table conveniences: select all, compare button state.
"use strict";

(function () {
  // MLflow route (after "#") -> keel path, or null when unknown.
  function mapRoute(hash) {
    var route = hash.replace(/^#/, "");
    var query = "";
    var q = route.indexOf("?");
    if (q >= 0) {
      query = route.slice(q);
      route = route.slice(0, q);
    }
    var parts = route.split("/").filter(function (p) { return p !== ""; });
    var enc = function (s) { return encodeURIComponent(decodeURIComponent(s)); };
    if (parts.length === 0) return "/";
    var head = parts[0];
    if (head === "experiments") {
      if (parts.length === 1) return "/";
      var exp = "/experiments/" + enc(parts[1]);
      if (parts.length >= 4 && parts[2] === "runs") {
        var run = exp + "/runs/" + enc(parts[3]);
        if (parts.length >= 5 && (parts[4] === "artifacts" || parts[4] === "artifactPath")) {
          return run + "/artifacts/" + parts.slice(5).map(enc).join("/");
        }
        return run;
      }
      // MLflow 3's logged models: "View Logged Model at …/#/experiments/1/models/m-…".
      if (parts.length >= 4 && parts[2] === "models") return exp + "/models/" + enc(parts[3]);
      return exp + (query || "");
    }
    if (head === "runs" && parts.length >= 2) return "/runs/" + enc(parts[1]);
    if (head === "compare-runs") return "/compare-runs" + query;
    if (head === "metric" && parts.length >= 2) {
      var sep = query ? "&" : "?";
      return "/compare-runs" + (query || "") + sep + "metric=" + enc(parts.slice(1).join("/"));
    }
    if (head === "models") {
      if (parts.length === 1) return "/models";
      var model = "/models/" + enc(parts[1]);
      if (parts.length >= 4 && parts[2] === "versions") return model + "/versions/" + enc(parts[3]);
      return model;
    }
    return null;
  }

  // Follows an MLflow route in the hash; true when the page is being replaced.
  function follow() {
    if (location.hash.indexOf("#/") !== 0) return false;
    var target = mapRoute(location.hash);
    if (target === null) return false;
    location.replace(target);
    return true;
  }
  // A link pasted into a tab already on this page changes only the hash.
  window.addEventListener("hashchange", follow);
  if (follow()) return;

  function ready() {
    var note = document.getElementById("route-note");
    if (note && location.hash.indexOf("#/") === 0) {
      note.textContent = "keel has no page for " + location.hash + "; here are the experiments.";
      note.hidden = false;
    }
    var form = document.getElementById("compare-form");
    if (form) {
      var button = document.getElementById("compare-button");
      var boxes = function () { return form.querySelectorAll("input[name=runs]"); };
      var update = function () {
        var n = form.querySelectorAll("input[name=runs]:checked").length;
        button.disabled = n < 2;
        button.textContent = n < 2 ? "Select 2 or more runs to compare" : "Compare " + n + " runs";
      };
      var all = document.getElementById("select-all");
      if (all) {
        all.addEventListener("change", function () {
          boxes().forEach(function (b) { b.checked = all.checked; });
          update();
        });
      }
      form.addEventListener("change", update);
      update();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
