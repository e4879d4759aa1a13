// offscreen.js runs the proxy (proxy type "webext") in the extension's
// offscreen document. This document only has chrome.runtime, so it takes
// its settings from the service worker and answers the popup's status
// requests itself.
"use strict";

(async () => {
  const api = await loadSnowflake("snowflake.wasm");
  let stopReporting = () => {};

  function start(settings) {
    stopReporting();
    stopReporting = startReporting(settings.reportURL, () => api.status());
    return api.start("webext", JSON.stringify(settings));
  }

  // stop resolves once the proxy has closed its connections, or after 10 s.
  async function stop() {
    api.stop();
    for (let i = 0; i < 100 && JSON.parse(api.status()).state !== "off"; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    stopReporting();
    stopReporting = () => {};
  }

  chrome.runtime.onMessage.addListener((msg, sender, reply) => {
    if (!msg || msg.target !== "offscreen") {
      return false;
    }
    switch (msg.cmd) {
      case "start":
        reply({ error: start(msg.settings) });
        return false;
      case "stop":
        stop().then(() => reply({ ok: true }));
        return true;
      case "status":
        reply(JSON.parse(api.status()));
        return false;
    }
    return false;
  });

  const orders = await chrome.runtime.sendMessage({ target: "background", cmd: "ready" });
  if (orders && orders.cmd === "start") {
    const err = start(orders.settings);
    if (err) {
      console.error("snowflake: start:", err);
    }
  }
})();
