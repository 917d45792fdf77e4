/**
 * Follows WebSocket frame boundaries in the bytes a client sends (RFC 6455 §5.2) without reading
 * payloads, so the hub knows whether a connection's stream stops inside a frame — or inside a
 * fragmented message — however its bytes were split into chunks. ws parses the same bytes after
 * (and closes on anything malformed); this only follows lengths.
 */
export class FrameScanner {
  readonly #header = Buffer.alloc(14);
  #headerLen = 0;
  /** Header bytes this frame has (2 until the second byte says more). */
  #headerNeed = 2;
  /** Payload bytes of the current frame still to come. */
  #remaining = 0;
  /** The current frame is a data frame with FIN: it ends its message. */
  #endsMessage = false;
  /** A data message was started by a frame without FIN and has not ended. */
  #fragmented = false;

  /** True while the stream stops inside a frame, or between the frames of an unfinished message. */
  get unfinished(): boolean {
    return this.#headerLen > 0 || this.#remaining > 0 || this.#fragmented;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= take;
        i += take;
        if (this.#remaining === 0) this.#frameEnded();
        continue;
      }
      this.#header[this.#headerLen++] = chunk[i++]!;
      if (this.#headerLen === 2) {
        const len7 = this.#header[1]! & 0x7f;
        this.#headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.#header[1]! & 0x80 ? 4 : 0);
      }
      if (this.#headerLen >= 2 && this.#headerLen === this.#headerNeed) this.#headerEnded();
    }
  }

  #headerEnded(): void {
    const h = this.#header;
    const len7 = h[1]! & 0x7f;
    const length = len7 === 126 ? h.readUInt16BE(2) : len7 === 127 ? Number(h.readBigUInt64BE(2)) : len7;
    const opcode = h[0]! & 0x0f;
    const fin = (h[0]! & 0x80) !== 0;
    this.#endsMessage = opcode < 8 && fin;
    if (opcode < 8 && !fin) this.#fragmented = true;
    this.#headerLen = 0;
    this.#headerNeed = 2;
    this.#remaining = length;
    if (length === 0) this.#frameEnded();
  }

  #frameEnded(): void {
    if (this.#endsMessage) this.#fragmented = false;
  }
}
