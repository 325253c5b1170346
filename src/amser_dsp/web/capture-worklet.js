// AudioWorklet processor: the microphone's samples (mixed to mono) posted to the page in blocks of 2048.
// A "flush" message posts what is left and answers "flushed", so the page gets every sample before it
// closes its encoder.

class AmserCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(2048);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage("flushed");
      }
    };
  }

  post() {
    if (this.filled) this.port.postMessage(this.block.slice(0, this.filled));
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let c = 0; c < channels.length; c++) v += channels[c][i];
        this.block[this.filled++] = v / channels.length;
        if (this.filled === this.block.length) this.post();
      }
    }
    return true;
  }
}

registerProcessor("amser-capture", AmserCapture);
