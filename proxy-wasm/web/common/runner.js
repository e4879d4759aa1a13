// runner.js loads snowflake.wasm (the Go proxy) and reports its status.
// Used by the web page and by the extension's offscreen document; needs
// wasm_exec.js (Go's loader) first.
"use strict";

// closeOnPageHide makes every RTCPeerConnection that this document opens
// close when the document goes away (the volunteer leaves the page or the
// browser closes). A closed connection tells its client at once; one that
// merely stops answering costs the client ICE's 5 seconds of silence before
// it looks for another proxy. The closing must happen inside the pagehide
// handler, which runs to its end before the page is gone, so it is done
// here and not in Go, whose goroutines may never get to run again.
function closeOnPageHide() {
  const Native = globalThis.RTCPeerConnection;
  if (!Native || Native.snowflakeTracked) {
    return;
  }
  const open = new Set();
  class Tracked extends Native {
    constructor(...args) {
      super(...args);
      open.add(this);
    }
    close() {
      open.delete(this);
      super.close();
    }
  }
  Tracked.snowflakeTracked = true;
  globalThis.RTCPeerConnection = Tracked;
  globalThis.addEventListener("pagehide", () => {
    for (const pc of open) {
      pc.close();
    }
  });
}

// loadSnowflake instantiates the WebAssembly proxy and resolves to its API
// object (see proxy-wasm/main_js.go).
async function loadSnowflake(wasmURL) {
  closeOnPageHide();
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
