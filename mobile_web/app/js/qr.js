// Reading QR codes from the camera, and telling what a scanned text is.
//
// The browser's BarcodeDetector where it exists (Android Chrome); elsewhere (iPhone Safari,
// desktop and Linux Chromium) frames go to a worker running the vendored jsQR
// (vendor/MANIFEST.json). Both paths give the decoded text to `onText`.

const KINDS = { 1: "store", 2: "payment", 3: "pay_code", 4: "card", 5: "event" };
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// "HTTPS://HOST/Q/<base32>" (either case) → {token, kind}; kind is read from the token's second
// byte (points/qrtokens.py, docs/tokens.md). Anything else → null.
export function classify(text, prefix) {
  const match = /^\s*(https?:\/\/[^/\s]+\/q\/)([a-z2-7]{100,200})\s*$/i.exec(text || "");
  if (!match) return null;
  if (prefix && match[1].toUpperCase() !== prefix) return null;
  const body = match[2].toUpperCase();
  let bits = 0;
  for (const char of body.slice(0, 4)) bits = (bits << 5) | BASE32.indexOf(char);
  const kind = KINDS[(bits >> 4) & 0xff] || "unknown";
  return { token: match[1].toUpperCase() + body, body, kind };
}

export class Scanner {
  constructor(video, onText) {
    this.video = video;
    this.onText = onText;
    this.stopped = false;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    if (this.stopped) return this.stop();
    this.video.srcObject = this.stream;
    await this.video.play();
    if ("BarcodeDetector" in window) {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes("qr_code")) {
        this.detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      }
    }
    if (!this.detector) {
      this.worker = new Worker(new URL("./decode-worker.js", import.meta.url));
      this.worker.onmessage = (event) => {
        this.busy = false;
        if (event.data) this.found(event.data);
      };
      this.canvas = document.createElement("canvas");
    }
    this.tick();
  }

  found(text) {
    if (this.stopped) return;
    this.stop();
    this.onText(text);
  }

  async tick() {
    if (this.stopped) return;
    const { video } = this;
    if (video.readyState >= 2 && !this.busy) {
      if (this.detector) {
        this.busy = true;
        try {
          const codes = await this.detector.detect(video);
          if (codes.length) return this.found(codes[0].rawValue);
        } catch {
          // a frame the detector could not read: the next one will do
        }
        this.busy = false;
      } else {
        const scale = Math.min(1, 800 / Math.max(video.videoWidth, video.videoHeight));
        const width = Math.round(video.videoWidth * scale);
        const height = Math.round(video.videoHeight * scale);
        this.canvas.width = width;
        this.canvas.height = height;
        const context = this.canvas.getContext("2d", { willReadFrequently: true });
        context.drawImage(video, 0, 0, width, height);
        const frame = context.getImageData(0, 0, width, height);
        this.busy = true;
        this.worker.postMessage({ width, height, data: frame.data.buffer }, [frame.data.buffer]);
      }
    }
    this.timer = setTimeout(() => this.tick(), 150);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.worker) this.worker.terminate();
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.video.srcObject = null;
  }
}
