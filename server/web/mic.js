// The microphone as the live session wants it: 16-bit PCM at 16 kHz, posted in 100 ms pieces.
// The page runs this in a 16 kHz AudioContext, where the browser has resampled already; a browser
// that kept another rate gets linear interpolation here.
class Pcm16 extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / 16000;
    this.t = 0; // where the next output sample falls, in input samples from this block's start
    this.last = 0; // the previous block's last sample
    this.out = new Int16Array(1600);
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0][0];
    if (!input) return true;
    for (; this.t <= input.length - 1; this.t += this.step) {
      const i = Math.floor(this.t), f = this.t - i;
      const a = i < 0 ? this.last : input[i], b = i + 1 < input.length ? input[i + 1] : a;
      const x = Math.max(-1, Math.min(1, a + (b - a) * f));
      this.out[this.n++] = Math.round(x * 32767);
      if (this.n === this.out.length) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(1600);
        this.n = 0;
      }
    }
    this.t -= input.length;
    this.last = input[input.length - 1];
    return true;
  }
}

registerProcessor('pcm16', Pcm16);
