// The camera on a screen of the staff app, through the wallet's qr.js (BarcodeDetector, or
// jsQR in a worker): the viewfinder, and a scanner that stops when the screen is left.
import { h, onLeave, setError } from "../../app/js/dom.js";
import { t } from "../../app/js/i18n.js";
import { Scanner } from "../../app/js/qr.js";

export function viewfinder() {
  return h(
    "div",
    { class: "viewfinder" },
    h("video", { id: "camera", muted: true, playsinline: true, "aria-hidden": "true" }),
    h("div", { class: "frame", "aria-hidden": "true" }),
  );
}

// The camera of the screen (the wallet's qr.js): `onText(text, camera)` for what it read;
// `camera.restart()` reads again. Stopped when the screen is left.
export function startCamera(onText) {
  let scanner = null;
  let left = false;
  const camera = {
    restart: () => begin(),
  };
  const begin = () => {
    if (left) return;
    const video = document.getElementById("camera");
    if (!video) return;
    scanner = new Scanner(video, (text) => onText(text, camera));
    scanner
      .start()
      .then(() => {
        const line = document.getElementById("scan-status");
        if (line) line.textContent = "";
      })
      .catch((error) => {
        scanner.stop();
        const missing = error && (error.name === "NotFoundError" || !navigator.mediaDevices);
        setError(missing ? t().cameraMissing : t().cameraRefused);
        const line = document.getElementById("scan-status");
        if (line) line.textContent = "";
      });
  };
  onLeave(() => {
    left = true;
    if (scanner) scanner.stop();
  });
  begin();
  return camera;
}
