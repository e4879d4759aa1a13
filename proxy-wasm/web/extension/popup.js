// popup.js shows the proxy's status and flips the switch. The switch state
// lives in storage (via the service worker); the figures come from the
// offscreen document, which answers while it exists.
"use strict";

(() => {
  const update = createStatusView(document);
  const toggle = document.getElementById("toggle");
  const errorEl = document.getElementById("error");
  let enabled = false;

  async function refresh() {
    let st = null;
    try {
      st = await chrome.runtime.sendMessage({ target: "offscreen", cmd: "status" });
    } catch (e) {
      // No offscreen document: the proxy is off.
    }
    update(st || null);
    if (!st && enabled) {
      document.getElementById("state").textContent = "starting";
      toggle.checked = true;
    }
  }

  toggle.addEventListener("change", async () => {
    enabled = toggle.checked;
    errorEl.textContent = "";
    const r = await chrome.runtime.sendMessage({ target: "background", cmd: "set-enabled", enabled });
    if (r && !r.ok) {
      errorEl.textContent = r.error;
    }
    refresh();
  });

  chrome.storage.local.get("enabled").then((s) => {
    enabled = s.enabled === true;
    toggle.checked = enabled;
    refresh();
  });
  setInterval(refresh, 1000);
})();
