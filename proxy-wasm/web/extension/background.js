// background.js is the extension's service worker. It keeps the on/off
// switch and the settings in chrome.storage.local and runs the proxy in an
// offscreen document, because MV3 service workers cannot create an
// RTCPeerConnection. The worker is stopped after about 30 s idle while the
// offscreen document keeps running, so it holds no state of its own:
// everything is in storage, and the offscreen document asks for its orders
// when it loads.
"use strict";

const OFFSCREEN = "offscreen.html";

// desired returns {enabled, settings}: settings.json from the package,
// overridden by whatever the user stored.
async function desired() {
  const stored = await chrome.storage.local.get(["enabled", "settings"]);
  const resp = await fetch(chrome.runtime.getURL("settings.json"));
  const base = await resp.json();
  return {
    enabled: stored.enabled === true,
    settings: Object.assign(base, stored.settings || {}),
  };
}

async function hasOffscreen() {
  const contexts = await chrome.runtime.getContexts({
    contextTypes: ["OFFSCREEN_DOCUMENT"],
    documentUrls: [chrome.runtime.getURL(OFFSCREEN)],
  });
  return contexts.length > 0;
}

// Only one offscreen document may exist per extension; creating is
// serialised so that two quick toggles do not race.
let creating = null;
async function ensureOffscreen() {
  if (await hasOffscreen()) {
    return;
  }
  if (!creating) {
    creating = chrome.offscreen
      .createDocument({
        url: OFFSCREEN,
        reasons: ["WEB_RTC"],
        justification: "The Snowflake proxy relays WebRTC data channels.",
      })
      .finally(() => {
        creating = null;
      });
  }
  await creating;
}

// apply brings the running proxy in line with storage. Calls run one after
// the other: an "off" that is stopping the proxy must have closed the
// offscreen document before a following "on" looks for it. Otherwise the
// "on" finds the old document and starts it again, and the "off" then
// closes it (after its stop waited 10 s in vain for the state "off"),
// leaving the switch on and no proxy running.
let applying = Promise.resolve();
function apply() {
  return serially(applyNow);
}

// serially runs f after every function given before it has finished.
function serially(f) {
  const run = applying.then(f, f);
  applying = run.catch(() => {});
  return run;
}

// applyNow does the work of apply. Starting happens when the offscreen
// document reports "ready" (below), so that a freshly created document is
// never sent orders before it listens.
async function applyNow() {
  const want = await desired();
  if (want.enabled) {
    if (await hasOffscreen()) {
      await chrome.runtime.sendMessage({ target: "offscreen", cmd: "start", settings: want.settings });
    } else {
      await ensureOffscreen();
    }
  } else if (await hasOffscreen()) {
    // Stop cleanly (connections closed, polls aborted), then drop the
    // document and its wasm.
    try {
      await chrome.runtime.sendMessage({ target: "offscreen", cmd: "stop" });
    } finally {
      await chrome.offscreen.closeDocument();
    }
  }
}

chrome.runtime.onMessage.addListener((msg, sender, reply) => {
  if (!msg || msg.target !== "background") {
    return false;
  }
  switch (msg.cmd) {
    case "set-enabled":
      chrome.storage.local
        .set({ enabled: msg.enabled === true })
        .then(apply)
        .then(() => reply({ ok: true }), (e) => reply({ ok: false, error: String(e) }));
      return true;
    case "ready":
      desired().then(
        (want) => reply(want.enabled ? { cmd: "start", settings: want.settings } : { cmd: "idle" }),
        (e) => reply({ cmd: "idle", error: String(e) }),
      );
      return true;
  }
  return false;
});

chrome.runtime.onStartup.addListener(() => apply());
chrome.runtime.onInstalled.addListener(() => apply());

// Neither event above fires when the volunteer enables the extension again
// after disabling it, which closed the offscreen document; the worker
// starts then too, so each start checks for a switch that is on without a
// document and creates the document (which asks for its orders). A running
// document is left alone.
serially(async () => {
  const want = await desired();
  if (want.enabled && !(await hasOffscreen())) {
    await ensureOffscreen();
  }
});
