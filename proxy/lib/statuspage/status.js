// Polls status.json once a second and shows the proxy's state, NAT type,
// clients now and in total, bytes relayed, and a plot of throughput over
// the last minute, like the browser proxy's page. All text goes through
// textContent, never markup.
"use strict";
(function () {
  const seconds = 60;
  const samples = [];
  let last = null;
  const $ = (id) => document.getElementById(id);

  function bytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  function draw() {
    const c = $("plot"), g = c.getContext("2d");
    const w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...samples);
    g.strokeStyle = "#7d4698";
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((v, i) => {
      const x = w * (i + seconds - samples.length) / (seconds - 1);
      const y = h - 2 - (h - 4) * v / max;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = "#555";
    g.font = "11px sans-serif";
    g.fillText("peak " + bytes(max) + "/s", 4, 12);
  }

  function show(st) {
    const total = st.bytes_up + st.bytes_down;
    $("state").textContent = "on";
    $("nat").textContent = st.nat;
    $("active").textContent = st.capacity > 0 ? st.active + " of " + st.capacity : String(st.active);
    $("total").textContent = st.failed > 0 ? st.connections + " (" + st.failed + " failed)" : String(st.connections);
    $("bytes").textContent = bytes(total) + " (" + bytes(st.bytes_down) + " to clients, " + bytes(st.bytes_up) + " from clients)";
    $("polls").textContent = st.polls + (st.poll_errors > 0 ? " (" + st.poll_errors + " failed)" : "");
    $("uptime").textContent = duration(st.uptime_seconds);
    const now = performance.now();
    let rate = 0;
    // A restarted proxy resets its counters; never plot a negative rate.
    if (last !== null && now > last.t && total >= last.total) {
      rate = (total - last.total) * 1000 / (now - last.t);
    }
    last = { t: now, total: total };
    $("rate").textContent = bytes(rate) + "/s";
    samples.push(rate);
    if (samples.length > seconds) samples.shift();
    draw();
  }

  async function tick() {
    try {
      const r = await fetch("status.json", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      show(await r.json());
      $("error").textContent = "";
    } catch (e) {
      $("state").textContent = "unreachable";
      $("error").textContent = "cannot reach the proxy: " + e.message;
    }
    setTimeout(tick, 1000);
  }
  tick();
})();
