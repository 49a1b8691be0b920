// A WebSocket multiplayer client for the browser, speaking the wire protocol of Godot's
// WebSocketMultiplayerPeer (and RustWebSocketMultiplayerPeer), as a Godot web export's client
// peer does:
//
//   1. an ordinary WebSocket connection to the server's ws:// or wss:// URL;
//   2. the server's first message is binary and exactly 4 bytes: this client's peer id, a
//      little-endian int32 (always >= 2; the server is peer 1);
//   3. after that, every WebSocket message either way is one packet (the raw bytes that
//      SceneMultiplayer puts in a packet; there is no further framing).
//
// No framework, no build step: an ES module for any current browser.
//
//   import { RwsmpClient } from "./rwsmp-client.js";
//   const client = new RwsmpClient("ws://127.0.0.1:9080/");
//   client.addEventListener("packet", (e) => console.log(e.detail.data));  // Uint8Array
//   const id = await client.connect();                                     // our peer id
//   client.send(new Uint8Array([1, 2, 3]));
//   client.close();
//
// Events (EventTarget; `detail` of a CustomEvent):
//   "connected"    { id }                   the id message arrived (Godot: connected_to_server)
//   "packet"       { data: Uint8Array }     one packet from the server (peer 1)
//   "disconnected" { code, reason, wasClean, id }   the connection closed after "connected"
//                                           (Godot: server_disconnected)
//   "failed"       { code, reason, error }  closed, failed or refused before "connected"
//                                           (Godot: connection_failed)
// A text message from the server is delivered as its UTF-8 bytes, as Godot's peers do.

export const ID_MESSAGE_SIZE = 4;

/** States, as Godot's MultiplayerPeer.ConnectionStatus. */
export const DISCONNECTED = 0;
export const CONNECTING = 1;
export const CONNECTED = 2;

/** Reads the peer id from the server's first message (4 bytes, little-endian int32). */
export function parseIdMessage(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength !== ID_MESSAGE_SIZE) {
    const what = buffer instanceof ArrayBuffer ? `${buffer.byteLength} bytes` : typeof buffer;
    throw new Error(`expected a ${ID_MESSAGE_SIZE}-byte binary id message, got ${what}`);
  }
  return new DataView(buffer).getInt32(0, true);
}

export class RwsmpClient extends EventTarget {
  /**
   * @param {string} url       ws:// or wss:// URL of the Godot server
   * @param {object} [options]
   * @param {string[]} [options.protocols]  WebSocket subprotocols (the server's
   *                                        supported_protocols)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.protocols = options.protocols || [];
    /** Our peer id once connected (0 before). */
    this.id = 0;
    this.status = DISCONNECTED;
    /** The WebSocket subprotocol the server selected ("" if none). */
    this.protocol = "";
    this.ws = null;
    this._pending = null;
  }

  /**
   * Opens the connection. Resolves with our peer id when the server's id message arrives;
   * rejects if the connection fails or closes first.
   */
  connect() {
    if (this.ws) {
      return Promise.reject(new Error("already connecting or connected"));
    }
    this.status = CONNECTING;
    return new Promise((resolve, reject) => {
      this._pending = { resolve, reject };
      let ws;
      try {
        ws = new WebSocket(this.url, this.protocols);
      } catch (error) {
        this._fail(1006, "", error);
        return;
      }
      this.ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        this.protocol = ws.protocol;
      };
      ws.onmessage = (event) => this._onMessage(event.data);
      ws.onclose = (event) => this._onClose(event.code, event.reason, event.wasClean);
      // A browser reports an error without details, always followed by "close".
      ws.onerror = () => {};
    });
  }

  /** Sends one packet to the server. `data`: Uint8Array, ArrayBuffer or another view. */
  send(data) {
    if (this.status !== CONNECTED) {
      throw new Error("not connected");
    }
    if (data instanceof ArrayBuffer) {
      data = new Uint8Array(data);
    } else if (!ArrayBuffer.isView(data)) {
      throw new TypeError("a packet is a Uint8Array, an ArrayBuffer or another ArrayBuffer view");
    }
    this.ws.send(data);
  }

  /** Bytes queued by send() and not yet handed to the network. */
  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  /** Closes the connection (close code 1000 unless given). The close event follows. */
  close(code = 1000, reason = "") {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      this.ws.close(code, reason);
    }
  }

  _onMessage(data) {
    if (this.status === CONNECTING) {
      let id;
      try {
        id = parseIdMessage(data);
      } catch (error) {
        this._fail(1002, "", error);
        this.ws.close(1002, "bad id message");
        return;
      }
      this.id = id;
      this.status = CONNECTED;
      const pending = this._pending;
      this._pending = null;
      this.dispatchEvent(new CustomEvent("connected", { detail: { id } }));
      pending.resolve(id);
      return;
    }
    if (this.status !== CONNECTED) {
      return;
    }
    const bytes =
      typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
    this.dispatchEvent(new CustomEvent("packet", { detail: { data: bytes } }));
  }

  _onClose(code, reason, wasClean) {
    if (this.status === CONNECTING) {
      this._fail(code, reason, new Error(`connection closed before the id message (code ${code})`));
      return;
    }
    if (this.status === CONNECTED) {
      this.status = DISCONNECTED;
      this.dispatchEvent(
        new CustomEvent("disconnected", { detail: { code, reason, wasClean, id: this.id } }),
      );
    }
  }

  _fail(code, reason, error) {
    if (this.status !== CONNECTING) {
      return;
    }
    this.status = DISCONNECTED;
    const pending = this._pending;
    this._pending = null;
    this.dispatchEvent(new CustomEvent("failed", { detail: { code, reason, error } }));
    if (pending) {
      pending.reject(error);
    }
  }
}
