// QoE beacons: a small queue flushed to POST /api/v1/telemetry/qoe. While the page lives,
// fetch with keepalive; when it goes away (pagehide, hidden), navigator.sendBeacon, which
// the browser delivers after the page is gone. Batches respect the server's limits
// (at most 50 events, 16 KiB).
const MAX_EVENTS = 50;

export function newSessionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function clean(event) {
  const out = {};
  for (const [key, value] of Object.entries(event)) {
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

export class BeaconQueue {
  constructor({ url, sessionId, videoId, cohort, log }) {
    this.url = url;
    this.base = { sessionId, videoId, cohort };
    this.events = [];
    this.log = log;
    this.sent = 0;
  }

  push(event) {
    this.events.push(clean(event));
    this.log("beacon", event);
  }

  flush({ unloading = false } = {}) {
    while (this.events.length) {
      const batch = this.events.splice(0, MAX_EVENTS);
      const body = JSON.stringify({ ...this.base, events: batch });
      this.sent += batch.length;
      if (unloading && navigator.sendBeacon) {
        if (navigator.sendBeacon(this.url, new Blob([body], { type: "application/json" }))) continue;
      }
      fetch(this.url, {
        method: "POST",
        body,
        keepalive: true,
        credentials: "omit",
        headers: { "Content-Type": "application/json" },
      }).catch((err) => this.log("beacon not sent", err));
    }
  }
}
