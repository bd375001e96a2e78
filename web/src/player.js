// The reference player of /watch/{id} and /embed/{id}: asks the app for a playback answer
// with the viewer's token, shows the archive thumbnail as poster, plays the signed HLS URL
// with hls.js (or the browser's own HLS where Media Source Extensions are missing) and
// reports QoE beacons. Bundled by `npm run build` in web/ into static/player/player.js.
//
// The viewer token: `#viewer=<JWT>` (preferred: a fragment never reaches a server log) or
// `?viewer=<JWT>` on the page URL; it is moved to sessionStorage (this tab only) and
// removed from the address bar at once. Later visits in the tab reuse it.
//
// With no viewer token, the admin token the upload page keeps in this tab's sessionStorage
// (the newcomer path: upload, then "Play") is sent to the admin playback route instead;
// the server allows it only while its playback policy lists the `admin` rule.
// The light build: no subtitles, alternate audio or DRM, which the reference player does
// not use; a smaller bundle to fetch and parse before the first frame (bench/startup.py).
import Hls from "hls.js/dist/hls.light.mjs";
import { BeaconQueue, newSessionId } from "./player/beacons.js";
import { cachingLoader, preloadFirstSegments, segmentKey } from "./player/cache.js";

const STORAGE_KEY = "hybridvideo.viewer";
const ADMIN_TOKEN_KEY = "hybridvideo.upload.token"; // written by web/src/upload.js
const MAX_RETRY_SECONDS = 30;
// A video still being delivered (just uploaded) is asked for again this often, this long.
const NOT_READY_RETRY_MS = 2000;
const NOT_READY_MAX_MS = 5 * 60 * 1000;
const TRANSIENT_STATUSES = ["NOT_DELIVERED", "PROCESSING"];

const root = document.getElementById("player");
const config = JSON.parse(root.dataset.config);
const video = document.getElementById("video");
const message = document.getElementById("message");
const log = config.debug ? (...args) => console.log("[player]", ...args) : () => {};

const state = {
  sessionId: newSessionId(),
  phase: "loading",
  error: null,
  answer: null,
  hls: null,
  native: false,
  playRequestedAt: null,
  startupMs: null,
  waitingSince: null,
  seeking: false,
  rebuffers: 0,
  rebufferMs: 0,
  watchMs: 0,
  lastTick: null,
  lastLevel: null,
};
window.hybridvideoPlayer = state; // for tests and support: read-only by convention

const beacons = new BeaconQueue({
  url: config.beaconUrl,
  sessionId: state.sessionId,
  videoId: config.videoId,
  cohort: config.cohort,
  log,
});

function viewerToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const given = fragment.get("viewer") || query.get("viewer");
  if (given) {
    sessionStorage.setItem(STORAGE_KEY, given);
    fragment.delete("viewer");
    query.delete("viewer");
    const search = query.toString();
    const hash = fragment.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : "") + (hash ? "#" + hash : ""));
  }
  return sessionStorage.getItem(STORAGE_KEY);
}

// Who asks for the playback answer: the viewer's JWT, else the admin's token, else nobody.
function credentials() {
  const viewer = viewerToken();
  if (viewer) return { token: viewer, admin: false };
  const admin = (sessionStorage.getItem(ADMIN_TOKEN_KEY) || "").trim();
  if (admin) return { token: admin, admin: true };
  return { token: null, admin: false };
}

function setPhase(phase) {
  state.phase = phase;
  root.dataset.state = phase;
}

function showError(code, text) {
  state.error = { code, text };
  setPhase("error");
  message.textContent = text;
  message.hidden = false;
  log("error", code, text);
}

function showNotice(text) {
  message.textContent = text;
  message.hidden = false;
}

function clearMessage() {
  message.hidden = true;
  message.textContent = "";
}

const API_MESSAGES = {
  401: "Sign in to watch this video: the player has no valid viewer token.",
  403: "You are not allowed to watch this video.",
  404: "This video does not exist.",
  409: "This video is not ready to play yet",
};

async function errorBody(response) {
  try {
    const body = await response.json();
    const error = body && body.error ? body.error : {};
    return {
      code: typeof error.code === "string" ? error.code : "",
      message: typeof error.message === "string" ? error.message : "",
    };
  } catch {
    return { code: "", message: "" };
  }
}

// A 409 for a video whose delivery is under way (e.g. uploaded seconds ago): worth waiting.
function stillDelivering(error) {
  return error.code === "NOT_READY" && TRANSIENT_STATUSES.some((s) => error.message.includes(`status ${s}`));
}

async function fetchPlayback(videoId, auth) {
  const headers = auth.token ? { Authorization: "Bearer " + auth.token } : {};
  const url = auth.admin
    ? config.adminPlaybackBase + encodeURIComponent(videoId)
    : config.playbackBase + encodeURIComponent(videoId) + "/playback";
  return fetch(url, {
    headers,
    credentials: "omit",
    cache: "no-store",
  });
}

async function loadAnswer(auth) {
  const started = performance.now();
  for (;;) {
    let response;
    try {
      response = await fetchPlayback(config.videoId, auth);
    } catch {
      showError("network", "The server could not be reached. Check your connection and reload.");
      return null;
    }
    if (response.status === 200) return response.json();
    const error = await errorBody(response);
    const detail = error.message;
    if (response.status === 409 && stillDelivering(error) && performance.now() - started < NOT_READY_MAX_MS) {
      setPhase("waiting-ready");
      showNotice(`This video is being prepared for playback (${detail}); it starts by itself when ready.`);
      await new Promise((resolve) => setTimeout(resolve, NOT_READY_RETRY_MS));
      continue;
    }
    if (response.status === 202) {
      const wait = Math.min(Number(response.headers.get("Retry-After")) || 5, MAX_RETRY_SECONDS);
      setPhase("waiting-import");
      showNotice(`This video is being restored from the archive; retrying in ${wait} s.`);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    const base = API_MESSAGES[response.status] || `The video cannot be played (error ${response.status}).`;
    const text = response.status === 409 && detail ? `${base}: ${detail}` : base;
    showError(`api-${response.status}`, text);
    return null;
  }
}

// --- QoE: startup, rebuffers (seeks excluded), watch time -------------------------------

function tick(now) {
  if (state.lastTick !== null) state.watchMs += now - state.lastTick;
  state.lastTick = now;
}

function watchEvent(final) {
  tick(performance.now());
  if (video.paused && state.waitingSince === null) state.lastTick = null;
  return {
    kind: "watch",
    seconds: Math.round(state.watchMs) / 1000,
    rebuffers: state.rebuffers,
    rebufferMs: Math.round(state.rebufferMs),
    final,
  };
}

function requestPlay() {
  if (state.playRequestedAt === null) state.playRequestedAt = performance.now();
  const started = video.play();
  if (started && started.catch) {
    started.catch((err) => {
      // Autoplay refused: the viewer presses play; startup counts from that press.
      state.playRequestedAt = null;
      setPhase("ready");
      log("play() refused", err && err.name);
    });
  }
}

video.addEventListener("play", () => {
  if (state.playRequestedAt === null) state.playRequestedAt = performance.now();
});
video.addEventListener("playing", () => {
  const now = performance.now();
  if (state.startupMs === null && state.playRequestedAt !== null) {
    state.startupMs = now - state.playRequestedAt;
    beacons.push({ kind: "startup", ms: Math.round(state.startupMs), native: state.native });
    beacons.flush();
    clearMessage();
  }
  if (state.waitingSince !== null) {
    const ms = now - state.waitingSince;
    state.rebuffers += 1;
    state.rebufferMs += ms;
    beacons.push({ kind: "rebuffer", ms: Math.round(ms), position: Math.round(video.currentTime * 1000) / 1000 });
    state.waitingSince = null;
  }
  state.lastTick = now;
  setPhase("playing");
});
video.addEventListener("waiting", () => {
  // A stall after the first frame that is not a seek is a rebuffer (Mux's definition).
  if (state.startupMs !== null && !video.seeking && !state.seeking && state.waitingSince === null) {
    state.waitingSince = performance.now();
  }
});
video.addEventListener("seeking", () => {
  state.seeking = true;
  state.waitingSince = null;
});
video.addEventListener("seeked", () => {
  state.seeking = false;
});
video.addEventListener("timeupdate", () => {
  if (!video.paused && !video.seeking) tick(performance.now());
});
video.addEventListener("pause", () => {
  tick(performance.now());
  state.lastTick = null;
});
video.addEventListener("ended", () => {
  beacons.push(watchEvent(true));
  beacons.flush();
  setPhase("ended");
});
addEventListener("pagehide", () => {
  if (state.startupMs !== null) beacons.push(watchEvent(true));
  beacons.flush({ unloading: true });
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") {
    if (state.startupMs !== null) beacons.push(watchEvent(false));
    beacons.flush({ unloading: true });
  }
});

// --- playback ---------------------------------------------------------------------------

function refusedText(status) {
  if (status === 401 || status === 403) {
    return `The video server refused the stream (${status}): the playback token is missing, expired, revoked or for another video. Reload the page to get a new one.`;
  }
  if (status === 404) return "The video server does not have this stream (404).";
  return status ? `The video server answered ${status}.` : "The video stream could not be loaded (network error).";
}

function playWithHls(answer) {
  const options = {
    debug: config.debug,
    enableWorker: true,
    startLevel: -1,
    capLevelToPlayerSize: false,
    // Startup (bench/startup.py): choose the first rendition from the default estimate
    // instead of first loading a fragment of the lowest one to measure the link, and ask
    // for that first fragment as soon as the playlist is known.
    testBandwidth: false,
    startFragPrefetch: true,
  };
  if (config.cache) {
    options.fLoader = cachingLoader(Hls.DefaultConfig.loader, (url) => segmentKey(answer.streamUid, url), log);
  }
  const hls = new Hls(options);
  state.hls = hls;
  let recovered = false;
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    log("levels", data.levels.map((level) => level.bitrate));
    if (!config.abr) {
      hls.currentLevel = data.levels.length - 1; // fixed: the top rendition
    }
    requestPlay();
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    const level = hls.levels[data.level];
    if (state.lastLevel !== null && state.lastLevel !== data.level && level) {
      beacons.push({
        kind: "bitrate",
        level: data.level,
        bitrate: Math.round(level.bitrate),
        height: level.height || undefined,
        auto: hls.autoLevelEnabled,
      });
    }
    state.lastLevel = data.level;
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    const status = data.response && data.response.code ? data.response.code : undefined;
    beacons.push({ kind: "error", fatal: true, type: String(data.type), details: String(data.details).slice(0, 120), status });
    beacons.flush();
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
      recovered = true;
      hls.recoverMediaError();
      return;
    }
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      showError(status ? `media-${status}` : "media-network", refusedText(status));
    } else {
      showError("media", "The video could not be decoded by this browser.");
    }
    hls.destroy();
  });
  hls.loadSource(answer.hls);
  hls.attachMedia(video);
}

function playNatively(answer) {
  state.native = true;
  video.addEventListener("error", () => {
    const code = video.error ? video.error.code : 0;
    beacons.push({ kind: "error", fatal: true, type: "nativeError", details: `MediaError ${code}` });
    beacons.flush();
    showError("media", refusedText(undefined) + " The server may have refused the token; reload the page.");
  });
  video.src = answer.hls;
  requestPlay();
}

async function preloadNext(auth) {
  if (!config.next || !config.cache || !config.preload) return;
  try {
    const response = await fetchPlayback(config.next, auth);
    if (response.status !== 200) return;
    const answer = await response.json();
    const count = await preloadFirstSegments(answer.hls, (url) => segmentKey(answer.streamUid, url), 2);
    log("preloaded", count, "segments of", config.next);
    root.dataset.preloaded = String(count);
  } catch (err) {
    log("preload failed", err);
  }
}

// The media token's claims, read without verification: the engine verifies it; the page
// only checks that the answer it got is for the video it was asked for.
function tokenClaims(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

// A playback answer whose token (or, when the server names it, video id) is for another
// video than the one this page was opened for is refused before any media request: a
// mixed-up proxy cache or a tampered answer must not play the wrong video under this URL.
// A token that is not a JWT is left to the video server to accept or refuse.
function answerMismatch(answer) {
  if (answer.videoId !== undefined && answer.videoId !== config.videoId) return "videoId";
  const claims = tokenClaims(answer.token);
  if (claims && claims.sub !== answer.streamUid) return "token";
  if (answer.token && typeof answer.hls === "string" && !answer.hls.includes(answer.token)) return "url";
  return null;
}

async function main() {
  setPhase("loading");
  const auth = credentials();
  const answer = await loadAnswer(auth);
  if (answer === null) return;
  const mismatch = answerMismatch(answer);
  if (mismatch !== null) {
    beacons.push({ kind: "error", fatal: true, type: "answerMismatch", details: mismatch });
    beacons.flush();
    showError(
      "answer-mismatch",
      "The server's playback answer is for another video than this page's; nothing was loaded. Reload the page.",
    );
    return;
  }
  state.answer = answer;
  clearMessage();
  if (answer.poster) video.poster = answer.poster;
  video.muted = true; // muted autoplay is allowed everywhere; the viewer unmutes
  if (Hls.isSupported()) {
    playWithHls(answer);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    playNatively(answer);
  } else {
    showError("unsupported", "This browser cannot play HLS video.");
    return;
  }
  setInterval(() => {
    if (state.startupMs !== null && !video.paused) beacons.push(watchEvent(false));
    beacons.flush();
  }, 10_000);
  video.addEventListener("playing", () => preloadNext(auth), { once: true });
}

main();
