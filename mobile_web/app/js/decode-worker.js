// Decodes camera frames off the main thread with the vendored jsQR (a classic script).
/* global jsQR */
importScripts("../vendor/jsqr/jsQR.js");

self.onmessage = (event) => {
  const { width, height, data } = event.data;
  const found = jsQR(new Uint8ClampedArray(data), width, height, {
    inversionAttempts: "attemptBoth",
  });
  self.postMessage(found ? found.data : null);
};
