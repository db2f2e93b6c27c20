// The wallet's service worker: the app shell from the cache, so the app opens without a
// connection and shows the last balance it saw (main.js keeps it). The API is never cached:
// paying and check-in need the server. A new CACHE name (bump VERSION) replaces the old shell.
const VERSION = "2";
const CACHE = `points-wallet-${VERSION}`;
const SHELL = [
  "./",
  "index.html",
  "app.css",
  "manifest.webmanifest",
  "js/main.js",
  "js/pay.js",
  "js/exchange.js",
  "js/api.js",
  "js/dom.js",
  "js/i18n.js",
  "js/qr.js",
  "js/strings-ja.js",
  "js/strings-en.js",
  "js/decode-worker.js",
  "vendor/jsqr/jsQR.js",
  "icons/icon.svg",
  "icons/icon-192.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

// The shell: the network first (so an update shows at once), the cache when there is none.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (!url.pathname.startsWith("/app/")) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() =>
        caches
          .match(event.request, { ignoreSearch: true })
          .then((hit) => hit || caches.match("index.html")),
      ),
  );
});
