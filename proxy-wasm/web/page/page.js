// page.js runs the proxy inside this page (proxy type "badge"). Settings
// come from settings.json next to the page, so whoever hosts the page
// decides the broker and relay; nothing is taken from the URL, which would
// let a crafted link point visitors' browsers at someone else's broker.
"use strict";

(async () => {
  const update = createStatusView(document);
  const toggle = document.getElementById("toggle");
  const errorEl = document.getElementById("error");
  let api;
  let settingsText;
  let settings;
  try {
    const resp = await fetch("settings.json", { cache: "no-store" });
    if (!resp.ok) {
      throw new Error("settings.json: HTTP " + resp.status);
    }
    settingsText = await resp.text();
    settings = JSON.parse(settingsText);
    api = await loadSnowflake("snowflake.wasm");
  } catch (e) {
    errorEl.textContent = "Cannot start: " + e.message;
    document.getElementById("state").textContent = "error";
    return;
  }
  const status = () => api.status();
  startReporting(settings.reportURL, status);
  toggle.disabled = false;
  toggle.addEventListener("change", () => {
    if (toggle.checked) {
      const err = api.start("badge", settingsText);
      if (err) {
        errorEl.textContent = err;
      }
    } else {
      api.stop();
    }
    update(JSON.parse(status()));
  });
  update(JSON.parse(status()));
  setInterval(() => update(JSON.parse(status())), 1000);
})();
