// Segment caching over the Cache API: a second play of a video fetches no segment.
//
// Delivery URLs carry the signed token in place of the uid
// ({base}/{token}/manifest/v0/seg_00001.m4s) and a new playback answer may carry a new
// token, so the cache key is the stream uid plus the path after /manifest/, never the URL.
// Only segments (and init segments) are cached: playlists always go to the server, so a
// revoked or expired token still stops playback at the next playlist request.
const CACHE_NAME = "hybridvideo-segments-v1";
const KEY_ORIGIN = location.origin + "/__hybridvideo_segment_cache__/";

export function segmentKey(streamUid, url, range) {
  const found = /\/manifest\/([^?#]+)/.exec(url);
  if (!found || !streamUid) return null;
  const suffix = range ? `?range=${range}` : "";
  return KEY_ORIGIN + encodeURIComponent(streamUid) + "/" + found[1] + suffix;
}

function openCache() {
  return "caches" in self ? caches.open(CACHE_NAME) : Promise.reject(new Error("no Cache API"));
}

// An hls.js fragment loader (fLoader) that answers from the cache, else loads with hls.js's
// own loader and stores the bytes.
export function cachingLoader(Base, keyOf, log) {
  return class CachingLoader extends Base {
    load(context, config, callbacks) {
      const range = context.rangeEnd ? `${context.rangeStart}-${context.rangeEnd}` : "";
      const key = "caches" in self ? keyOf(context.url, range) : null;
      if (!key) {
        super.load(context, config, callbacks);
        return;
      }
      const start = performance.now();
      openCache()
        .then((cache) => cache.match(key))
        .then((hit) => (hit ? hit.arrayBuffer() : null))
        .catch(() => null)
        .then((data) => {
          if (this.hvAborted) return;
          if (data === null) {
            super.load(context, config, {
              ...callbacks,
              onSuccess: (response, stats, ctx, details) => {
                if (response.data instanceof ArrayBuffer) {
                  const copy = response.data.slice(0);
                  openCache()
                    .then((cache) => cache.put(key, new Response(copy)))
                    .catch((err) => log("cache put failed", err));
                }
                callbacks.onSuccess(response, stats, ctx, details);
              },
            });
            return;
          }
          const now = performance.now();
          this.context = context;
          this.stats.loading.start = start;
          this.stats.loading.first = now;
          this.stats.loading.end = now;
          this.stats.loaded = data.byteLength;
          this.stats.total = data.byteLength;
          log("segment from cache", key);
          callbacks.onSuccess({ url: context.url, data }, this.stats, context, null);
        });
    }

    abort() {
      this.hvAborted = true;
      super.abort();
    }
  };
}

function resolve(uri, base) {
  return new URL(uri, base).href;
}

// Fetch the first `count` segments (and the init segment) of each rendition of a master
// playlist into the cache, so the next video of a list starts from local bytes.
export async function preloadFirstSegments(masterUrl, keyOf, count) {
  const master = await (await fetch(masterUrl, { credentials: "omit" })).text();
  const variants = master
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .slice(0, 4)
    .map((uri) => resolve(uri, masterUrl));
  const cache = await openCache();
  let stored = 0;
  for (const variantUrl of variants) {
    const text = await (await fetch(variantUrl, { credentials: "omit" })).text();
    const uris = [];
    const map = /#EXT-X-MAP:URI="([^"]+)"/.exec(text);
    if (map) uris.push(map[1]);
    uris.push(...text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).slice(0, count));
    for (const uri of uris) {
      const url = resolve(uri, variantUrl);
      const key = keyOf(url, "");
      if (!key || (await cache.match(key))) continue;
      const response = await fetch(url, { credentials: "omit" });
      if (!response.ok) continue;
      await cache.put(key, new Response(await response.arrayBuffer()));
      stored += 1;
    }
  }
  return stored;
}
