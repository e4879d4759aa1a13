// Polls status.json every 2 s and keeps 5 minutes of throughput samples for
// the plot. Values are written with textContent only, never as HTML.
"use strict";
(function () {
  const period = 2000;
  const keep = 150; // samples: 150 x 2 s = 5 min
  const samples = [];
  let last = null;

  const el = (id) => document.getElementById(id);
  const set = (id, text) => { el(id).textContent = text; };

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
    return m + "m " + (s % 60) + "s";
  }

  function draw() {
    const c = el("plot"), g = c.getContext("2d");
    const w = c.width, h = c.height, pad = 28;
    g.clearRect(0, 0, w, h);
    let max = 1;
    for (const s of samples) max = Math.max(max, s.up, s.down);
    g.fillStyle = "#b9a7d6";
    g.font = "12px system-ui, sans-serif";
    g.fillText(bytes(max) + "/s", 6, 14);
    const line = (key, color) => {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      samples.forEach((s, i) => {
        const x = pad + (w - 2 * pad) * (i + keep - samples.length) / (keep - 1);
        const y = h - pad - (h - 2 * pad) * s[key] / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    };
    line("down", "#6ee7b7");
    line("up", "#ffb74d");
  }

  function show(st) {
    set("active", st.active);
    set("capacity", st.capacity > 0 ? "of " + st.capacity : "no limit");
    set("connections", st.connections);
    set("failed", st.failed > 0 ? st.failed + " failed" : "");
    set("down", bytes(st.bytes_down));
    set("up", bytes(st.bytes_up));
    set("nat", st.nat);
    set("polls", st.polls + " polls, " + st.poll_errors + " failed");
    set("uptime", duration(st.uptime_seconds));
    const now = Date.now();
    if (last !== null) {
      const dt = Math.max((now - last.t) / 1000, 0.001);
      // A restarted proxy resets its counters; never plot negative rates.
      samples.push({
        up: Math.max(0, st.bytes_up - last.up) / dt,
        down: Math.max(0, st.bytes_down - last.down) / dt,
      });
      if (samples.length > keep) samples.shift();
      draw();
    }
    last = { t: now, up: st.bytes_up, down: st.bytes_down };
  }

  async function tick() {
    const state = el("state");
    try {
      const r = await fetch("status.json", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      show(await r.json());
      state.textContent = "running";
      state.className = "state ok";
    } catch (e) {
      state.textContent = "cannot reach the proxy (" + e.message + ")";
      state.className = "state err";
    }
    setTimeout(tick, period);
  }
  tick();
})();
