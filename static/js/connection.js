// The Socket.IO link: connects with the session's token, feeds the store, asks for a fresh
// snapshot after a seq gap, and sends the dashboard's commands with acknowledgements.

import { io } from '/vendor/socket.io.esm.min.js';
import { ApiError, askForToken, getToken } from './api.js';
import { silenceLimitMs } from './views/liveness.js';

const COMMAND_TIMEOUT_MS = 8000;

export class Connection {
  /**
   * @param store     the Store to feed
   * @param onStatus  (state, detail) => void; state is connecting | syncing | live |
   *                  silent | reconnecting | unauthorized | offline
   * @param onSnapshot (result of store.applySnapshot) => void
   */
  constructor(store, { onStatus, onSnapshot }) {
    this.store = store;
    this.onStatus = onStatus;
    this.onSnapshot = onSnapshot;
    this.state = 'connecting';
    this.socket = null;
  }

  start() {
    const socket = io({
      transports: ['websocket', 'polling'],
      // A server with a token refuses a handshake without it (a browser cannot set headers
      // on a WebSocket, so it goes in the query); refreshed before every (re)connect below.
      query: tokenQuery(),
      // Called on every (re)connect, so a token entered later is used at once.
      auth: (cb) => cb(getToken() ? { token: getToken() } : {}),
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
    });
    this.socket = socket;
    socket.io.on('reconnect_attempt', () => {
      socket.io.opts.query = tokenQuery();
    });
    socket.on('connect', () => {
      this.store.awaitingSnapshot = true; // the server sends one to every new connection
      this._status('syncing');
    });
    socket.on('disconnect', (reason) => {
      this.store.awaitingSnapshot = true;
      if (reason === 'io server disconnect') socket.connect(); // server restarted or shed us
      this._status('reconnecting', reason);
    });
    socket.on('connect_error', async (err) => {
      // A refused handshake reaches a browser only as "websocket error": ask the API
      // whether the token is what is missing.
      if (/unauthorized/i.test(err.message || '') || (await tokenRefused())) {
        this._status('unauthorized');
        await askForToken(Boolean(getToken()));
        socket.io.opts.query = tokenQuery();
        socket.connect();
      } else {
        this._status(socket.active ? 'reconnecting' : 'offline', err.message);
      }
    });
    // Every message says the server is alive; one after a silence ends it.
    socket.onAny(() => this._heard());
    socket.on('snapshot', (snap) => {
      const result = this.store.applySnapshot(snap);
      this._status('live');
      this.onSnapshot(result);
    });
    socket.on('incidents', (changed) => this.store.applyIncidents(changed));
    socket.on('events', (batch) => {
      const outcome = this.store.applyEvents(batch);
      if (outcome === 'gap') {
        this._status('syncing', 'missed events');
        socket.emit('resync');
      }
    });
    socket.on('workers', (message) => {
      this.store.setWorkers(message.workers);
      this.store.setStats(message.stats);
      this.store.setChaos(message.chaos);
    });
  }

  _heard() {
    this.store.heard();
    if (this.state === 'silent' && this.socket?.connected) {
      this.store.regain();
      this._status('live');
    }
  }

  /** Called about every 250 ms: a live page that heard nothing for too long says so. */
  checkSilence(now = performance.now()) {
    if (this.state !== 'live') return;
    if (now - this.store.lastHeardAt > silenceLimitMs(this.store.config)) {
      this._status('silent', `nothing heard for ${((now - this.store.lastHeardAt) / 1000).toFixed(1)} s`);
    }
  }

  _status(state, detail = '') {
    this.state = state;
    this.onStatus(state, detail);
  }

  /** Send a command; resolves with the acknowledgement, rejects with ApiError. */
  async command(name, data) {
    if (!this.socket?.connected) throw new ApiError(0, 'offline', 'not connected to the server');
    let reply;
    try {
      reply = await this.socket.timeout(COMMAND_TIMEOUT_MS).emitWithAck(name, data);
    } catch {
      throw new ApiError(0, 'timeout', `no answer to ${name} within ${COMMAND_TIMEOUT_MS / 1000} s`);
    }
    if (reply && reply.error) throw new ApiError(reply.status, reply.error.code, reply.error.message);
    return reply;
  }
}

function tokenQuery() {
  return getToken() ? { token: getToken() } : {};
}

/** True when the server answers 401 to a Socket.IO handshake with the session's token. A
 * HEAD opens nothing: the server's gate answers it itself, 204 when the token passes. */
async function tokenRefused() {
  const query = new URLSearchParams({ EIO: '4', transport: 'polling', ...tokenQuery() });
  try {
    const response = await fetch(`/socket.io/?${query}`, { method: 'HEAD' });
    return response.status === 401;
  } catch {
    return false; // unreachable: not a token problem
  }
}
