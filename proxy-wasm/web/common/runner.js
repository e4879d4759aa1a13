// runner.js loads snowflake.wasm (the Go proxy) and reports its status.
// Used by the web page and by the extension's offscreen document; needs
// wasm_exec.js (Go's loader) first.
"use strict";

// loadSnowflake instantiates the WebAssembly proxy and resolves to its API
// object (see proxy-wasm/main_js.go).
async function loadSnowflake(wasmURL) {
  const go = new Go();
  const resp = fetch(wasmURL);
  let result;
  try {
    result = await WebAssembly.instantiateStreaming(resp, go.importObject);
  } catch (e) {
    // Some static servers send a wrong Content-Type for .wasm.
    const bytes = await (await fetch(wasmURL)).arrayBuffer();
    result = await WebAssembly.instantiate(bytes, go.importObject);
  }
  // run() settles only when Go's main returns, which it never does; the
  // API object exists as soon as run() has started main.
  go.run(result.instance).catch((e) => console.error("snowflake: wasm exited", e));
  if (!globalThis.snowflakeProxy) {
    throw new Error("snowflake: wasm did not register its API");
  }
  return globalThis.snowflakeProxy;
}

// startReporting POSTs the status JSON to url every second (used by the
// end-to-end tests and by operators who collect figures). The body is
// text/plain so a cross-origin POST needs no CORS preflight. Returns a
// function that stops it.
function startReporting(url, getStatus) {
  if (!url) {
    return () => {};
  }
  let busy = false;
  const send = async () => {
    if (busy) {
      return;
    }
    busy = true;
    try {
      await fetch(url, {
        method: "POST",
        body: getStatus(),
        headers: { "Content-Type": "text/plain" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      // The collector may be down; try again next time.
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(send, 1000);
  send();
  return () => {
    clearInterval(timer);
    send();
  };
}
