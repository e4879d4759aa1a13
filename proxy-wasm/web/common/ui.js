// ui.js renders the proxy's status: state, NAT type, clients now and in
// total, bytes relayed, and a plot of throughput over the last minute.
// Used by the web page and the extension popup. All text goes through
// textContent, never markup.
"use strict";

const PLOT_SECONDS = 60;

function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

// createStatusView binds to the elements with the given ids inside doc and
// returns update(status), to be called about once a second with the parsed
// status object (or null when the proxy is not loaded).
function createStatusView(doc) {
  const $ = (id) => doc.getElementById(id);
  const canvas = $("plot");
  const samples = [];
  let last = null;

  function draw() {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1, ...samples);
    ctx.strokeStyle = "#7d4698";
    ctx.lineWidth = 2;
    ctx.beginPath();
    samples.forEach((v, i) => {
      const x = (w * (i + PLOT_SECONDS - samples.length)) / (PLOT_SECONDS - 1);
      const y = h - 2 - ((h - 4) * v) / max;
      if (i === 0) {
        ctx.moveTo(x, y);
      } else {
        ctx.lineTo(x, y);
      }
    });
    ctx.stroke();
    ctx.fillStyle = "#555";
    ctx.font = "11px sans-serif";
    ctx.fillText("peak " + formatBytes(max) + "/s", 4, 12);
  }

  return function update(st) {
    const now = performance.now();
    const on = st && st.state === "on";
    $("toggle").checked = !!st && st.state !== "off";
    $("state").textContent = st ? st.state : "off";
    $("nat").textContent = st ? st.nat : "unknown";
    $("active").textContent = st ? String(st.active) : "0";
    $("total").textContent = st ? String(st.connections) : "0";
    const bytes = st ? st.bytesUp + st.bytesDown : 0;
    $("bytes").textContent = formatBytes(bytes);
    $("error").textContent = st && st.error ? st.error : "";
    let rate = 0;
    if (on && last && now > last.t && bytes >= last.bytes) {
      rate = ((bytes - last.bytes) * 1000) / (now - last.t);
    }
    last = { t: now, bytes };
    $("rate").textContent = formatBytes(rate) + "/s";
    samples.push(rate);
    if (samples.length > PLOT_SECONDS) {
      samples.shift();
    }
    draw();
  };
}
