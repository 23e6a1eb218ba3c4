/* dualline console behaviour, kept small: the CSP allows scripts from this site only, so pages
   carry no inline JavaScript. They say what they need with data attributes:
   - the phone menu: <button class="menu-toggle" aria-controls="ID"> folds and unfolds #ID;
   - charts: <div class="chart" data-chart-option="ID"> is drawn with Apache ECharts (vendored,
     loaded by the page) from the option in <script type="application/json" id="ID">: plain data,
     never functions, so nothing is evaluated;
   - <form data-confirm="question"> asks before submitting;
   - htmx requests carry the CSRF token from <meta name="csrf-token">. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function setupMenu() {
    document.querySelectorAll(".menu-toggle").forEach(function (button) {
      var target = document.getElementById(button.getAttribute("aria-controls"));
      if (!target) { return; }
      button.addEventListener("click", function () {
        var open = target.classList.toggle("open");
        button.setAttribute("aria-expanded", open ? "true" : "false");
      });
    });
  }

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) { return null; }
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  var charts = [];

  function setupCharts() {
    if (!window.echarts) { return; }
    document.querySelectorAll("[data-chart-option]").forEach(function (el) {
      var option = readJson(el.getAttribute("data-chart-option"));
      if (!option) { return; }
      // Rich-text tooltips are drawn on the canvas: HTML tooltips would need inline styles,
      // which the CSP forbids.
      option.tooltip = Object.assign({ trigger: "axis", renderMode: "richText" }, option.tooltip || {});
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option);
      el.setAttribute("data-chart-ready", "1");
      charts.push(chart);
    });
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) { window.clearTimeout(pending); }
      pending = window.setTimeout(function () { charts.forEach(function (c) { c.resize(); }); }, 150);
    });
  }

  function setupConfirms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    setupMenu();
    setupCharts();
    setupConfirms();
  });
})();
