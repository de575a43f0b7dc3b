/*
 * rohrpost.js — the browser (and Node) client of Rohrpost.
 *
 *   const rp = new Rohrpost({connectUrl: '/connect'});
 *   rp.on('chat.room.*', (data, topic) => render(topic, data));
 *   rp.on('error', err => console.warn(err.code, err.message));
 *   rp.publish('chat.room.lobby', {text: 'hi'});
 *
 * One connection attempt: GET `connectUrl` (plain text: the SockJS URL of the least-loaded
 * worker) → open SockJS there → send `{"hello": 1}`, or `{"hello": 1, "resume": token}` when a
 * token is known → the server answers on `rohrpost.welcome` with `{session, resume, resumed,
 * whitelist}` → the session is open: queued messages are sent, in the order they were published.
 *
 * When the connection is lost the client tries again, always through `connectUrl`, so a dead or
 * draining worker is skipped: at once after a worker restart (close code 1012, or Rohrpost 0.x's
 * 100), otherwise after an exponential backoff with jitter, capped at `maxBackoff`. It never gives
 * up by itself; only `close()` stops it. Every attempt is bounded by `connectTimeout`.
 *
 * Ways to load it:
 *   - a plain script (`<script src="/js/rohrpost.js">` after `/js/sockjs.min.js`) defines the
 *     global `Rohrpost`;
 *   - an ES module: `import {Rohrpost} from '/js/rohrpost.mjs'` (the module beside this file);
 *   - Node (20+, for `fetch`): `const {Rohrpost} = require('.../rohrpost.js')`, passing
 *     sockjs-client's export as the `SockJS` option.
 *
 * Dependency-free apart from sockjs-client 1.x.
 */
(function (root) {
  'use strict';

  /** Close codes that mean "this worker restarts": reconnect at once. */
  var RESTART_CODES = [1012, 100];
  /** Names `on()` takes as client events; anything else is a topic pattern. */
  var EVENTS = ['open', 'reconnect', 'close', 'error', 'state'];
  var WELCOME_TOPIC = 'rohrpost.welcome';
  var ERROR_TOPIC = 'rohrpost.error';
  /** SockJS's (and WebSocket's) readyState of an open connection. */
  var SOCK_OPEN = 1;
  /** The first backoff ceiling, in ms; it doubles per failed attempt up to `maxBackoff`. */
  var FIRST_BACKOFF = 250;

  var DEFAULTS = {
    resume: true,
    maxBackoff: 30000,
    connectTimeout: 15000,
    maxQueue: 1000
  };

  /**
   * Whether `topic` matches `pattern`, by the server's rule: `*` matches any run of characters
   * (dots included, possibly none), every other character only itself (`a?b` matches `a?b`).
   * Linear backtracking over the last `*`, so no pattern can make it slow.
   * @param {string} pattern
   * @param {string} topic
   * @returns {boolean}
   */
  function patternMatches(pattern, topic) {
    var p = 0;
    var t = 0;
    var star = -1; // index in `pattern` of the last `*` seen
    var resumeAt = 0; // where in `topic` that `*` stopped swallowing
    while (t < topic.length) {
      if (p < pattern.length && pattern.charAt(p) === '*') {
        star = p;
        resumeAt = t;
        p += 1;
      } else if (p < pattern.length && pattern.charAt(p) === topic.charAt(t)) {
        p += 1;
        t += 1;
      } else if (star >= 0) {
        // Let the last `*` swallow one more character and retry from there.
        resumeAt += 1;
        t = resumeAt;
        p = star + 1;
      } else {
        return false;
      }
    }
    while (p < pattern.length && pattern.charAt(p) === '*') p += 1;
    return p === pattern.length;
  }

  /**
   * A self-reconnecting Rohrpost session. Connecting starts at once.
   *
   * @constructor
   * @param {object} options
   * @param {string} options.connectUrl  the server's `/connect` URL (absolute under Node)
   * @param {string[]} [options.transports]  SockJS transports to allow (default: all)
   * @param {boolean} [options.resume=true]  also keep the resume token in `sessionStorage`, so a
   *   page reload continues the session (reconnects resume from memory either way)
   * @param {number} [options.maxBackoff=30000]  longest pause between attempts, in ms
   * @param {number} [options.connectTimeout=15000]  longest one attempt (/connect, SockJS open,
   *   welcome) may take before it is abandoned and retried, in ms
   * @param {number} [options.maxQueue=1000]  most messages kept while not open; more are refused
   *   with an `error` event (`queue_full`)
   * @param {Function} [options.SockJS]  the SockJS constructor (default: the global `SockJS`)
   * @param {Function} [options.fetch]  the fetch function (default: the global `fetch`)
   */
  function Rohrpost(options) {
    if (!(this instanceof Rohrpost)) return new Rohrpost(options);
    if (!options || typeof options.connectUrl !== 'string' || !options.connectUrl) {
      throw new TypeError('Rohrpost: the connectUrl option is required');
    }
    /** Where each attempt asks for a worker. */
    this.connectUrl = options.connectUrl;
    /** SockJS transports allowed, or undefined for all. */
    this.transports = options.transports;
    /** Whether the resume token is also kept in `sessionStorage`. */
    this.resume = pick(options, 'resume') !== false;
    this.maxBackoff = positive(options, 'maxBackoff');
    this.connectTimeout = positive(options, 'connectTimeout');
    this.maxQueue = positive(options, 'maxQueue');
    this._SockJS = options.SockJS || root.SockJS;
    this._fetch = options.fetch || (typeof root.fetch === 'function' ? root.fetch.bind(root) : null);
    if (typeof this._SockJS !== 'function') {
      throw new TypeError('Rohrpost: sockjs-client is not loaded (load /js/sockjs.min.js or pass the SockJS option)');
    }
    if (typeof this._fetch !== 'function') throw new TypeError('Rohrpost: no fetch function (pass the fetch option)');

    /** 'connecting' (no session yet), 'open', 'reconnecting' (had one), or 'closed' (by `close()`). */
    this.state = 'connecting';
    /** The session id (32 hex digits) once welcomed; kept while reconnecting. */
    this.session = null;
    /** The worker's SockJS URL of the current (or last) connection. */
    this.url = null;
    /** The SockJS transport of the current (or last) connection, e.g. 'websocket'. */
    this.transport = null;
    /** The session's whitelist as of the last welcome (backends may change it later). */
    this.whitelist = [];
    /** How many times the session was welcomed again after its first welcome. */
    this.reconnects = 0;

    this._handlers = [];
    this._queue = []; // encoded messages waiting for an open session, oldest first
    this._sock = null;
    this._welcomed = false; // whether the current connection got its welcome
    this._attempt = 0; // id of the current attempt; callbacks of older ones are ignored
    this._failures = 0; // failed attempts since the last welcome
    this._backoffs = 0; // backoff pauses taken since the last welcome
    this._lostAt = null; // when the last open connection was lost (for the reconnect gap)
    this._retryTimer = null;
    this._attemptTimer = null;
    this._abort = null; // aborts the pending /connect request
    this._stopped = false;
    this._token = this._loadToken();
    this._connect();
  }

  function pick(options, name) {
    return options[name] === undefined ? DEFAULTS[name] : options[name];
  }

  function positive(options, name) {
    var value = pick(options, name);
    if (typeof value !== 'number' || !(value > 0)) {
      throw new TypeError('Rohrpost: the ' + name + ' option must be a positive number of ' +
        (name === 'maxQueue' ? 'messages' : 'ms'));
    }
    return value;
  }

  /** The matcher `on()` uses, exposed for tests and for routing of one's own. */
  Rohrpost.patternMatches = patternMatches;

  /**
   * Calls `fn(data, topic)` for every message whose topic matches `topicOrPattern`, or for a
   * client event: 'open' (the first welcome's data), 'reconnect' (`{gap, resumed}`: ms between
   * losing the connection and the next welcome), 'close' (`{code, reason, willReconnect}`, for
   * every lost connection or failed attempt), 'error' (`{code, message, topic?}` from
   * `rohrpost.error`, or the client's own `queue_full` / `closed`), 'state' (the new state).
   * @param {string} topicOrPattern  an event name, or a pattern (`*` = any run of characters)
   * @param {function(*, string)} fn
   * @returns {Rohrpost} this
   */
  Rohrpost.prototype.on = function (topicOrPattern, fn) {
    return this._listen(topicOrPattern, fn, false);
  };

  /** Like `on`, for the first matching message or event only. @returns {Rohrpost} this */
  Rohrpost.prototype.once = function (topicOrPattern, fn) {
    return this._listen(topicOrPattern, fn, true);
  };

  /**
   * Removes the handlers registered (with `on` or `once`) under exactly `topicOrPattern`: only
   * `fn` when given, else all of them.
   * @returns {Rohrpost} this
   */
  Rohrpost.prototype.off = function (topicOrPattern, fn) {
    this._handlers = this._handlers.filter(function (h) {
      return !(h.pattern === topicOrPattern && (!fn || h.fn === fn));
    });
    return this;
  };

  /**
   * Sends `data` (any JSON value; `undefined` becomes null) on `topic`. While the session is not
   * open the message is queued and sent after the next welcome, in publish order. Problems the
   * server finds come back as `error` events.
   * @param {string} topic
   * @param {*} [data]
   * @returns {Rohrpost} this
   */
  Rohrpost.prototype.publish = function (topic, data) {
    if (typeof topic !== 'string' || !topic) throw new TypeError('Rohrpost.publish: topic must be a non-empty string');
    var text = JSON.stringify({ topic: topic, data: data === undefined ? null : data });
    if (this._stopped) {
      this._emit('error', { code: 'closed', message: 'publish after close(): not sent', topic: topic });
    } else if (this._queue.length === 0 && this._isOpen()) {
      this._sock.send(text);
    } else if (this._queue.length >= this.maxQueue) {
      this._emit('error', {
        code: 'queue_full',
        message: 'not sent: ' + this.maxQueue + ' messages already wait for the connection',
        topic: topic
      });
    } else {
      this._queue.push(text);
    }
    return this;
  };

  /**
   * Closes for good: no more attempts, queued messages are dropped, later publishes are refused.
   * Emits 'state' ('closed') and 'close' (`{code: 1000, willReconnect: false}`) once.
   */
  Rohrpost.prototype.close = function () {
    if (this._stopped) return;
    this._stopped = true;
    this._cancelAttempt();
    clearTimeout(this._retryTimer);
    this._queue = [];
    this._dropSocket(1000, 'client closed');
    this._setState('closed');
    this._emit('close', { code: 1000, reason: 'client closed', willReconnect: false });
  };

  Rohrpost.prototype._listen = function (pattern, fn, once) {
    if (typeof pattern !== 'string' || !pattern) throw new TypeError('Rohrpost.on: a topic pattern or event name is required');
    if (typeof fn !== 'function') throw new TypeError('Rohrpost.on: the handler must be a function');
    this._handlers.push({ pattern: pattern, fn: fn, once: once, event: EVENTS.indexOf(pattern) >= 0 });
    return this;
  };

  /** Calls the handlers of client event `name`. */
  Rohrpost.prototype._emit = function (name, value) {
    this._call(function (h) { return h.event && h.pattern === name; }, value, name);
  };

  /** Calls the handlers whose pattern matches the message's `topic`. */
  Rohrpost.prototype._deliver = function (topic, data) {
    this._call(function (h) { return !h.event && patternMatches(h.pattern, topic); }, data, topic);
  };

  /**
   * Calls every handler `wanted` picks, in registration order, over a snapshot of the list (so
   * handlers may add or remove handlers). A throwing handler does not stop the others; its
   * error is rethrown on a fresh stack, where the page or process reports it.
   */
  Rohrpost.prototype._call = function (wanted, value, name) {
    var self = this;
    this._handlers.slice().forEach(function (h) {
      if (!wanted(h)) return;
      if (h.once) {
        var at = self._handlers.indexOf(h);
        if (at < 0) return; // already fired (or removed) during this round
        self._handlers.splice(at, 1);
      }
      try {
        h.fn.call(self, value, name);
      } catch (err) {
        setTimeout(function () { throw err; }, 0);
      }
    });
  };

  Rohrpost.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  };

  Rohrpost.prototype._isOpen = function () {
    return this.state === 'open' && this._sock !== null && this._sock.readyState === SOCK_OPEN;
  };

  /** One attempt: ask `connectUrl` for a worker, then open SockJS to it. */
  Rohrpost.prototype._connect = function () {
    var self = this;
    if (this._stopped) return;
    var attempt = ++this._attempt;
    this._setState(this.session ? 'reconnecting' : 'connecting');
    this._attemptTimer = setTimeout(function () {
      if (attempt === self._attempt) self._fail(4000, 'no welcome within ' + self.connectTimeout + ' ms');
    }, this.connectTimeout);
    var init = { cache: 'no-store', headers: { Accept: 'text/plain' } };
    if (typeof root.AbortController === 'function') {
      var controller = new root.AbortController();
      init.signal = controller.signal;
      this._abort = function () { controller.abort(); };
    }
    var request;
    try {
      request = this._fetch(this.connectUrl, init);
    } catch (err) {
      request = Promise.reject(err);
    }
    request
      .then(function (res) {
        if (!res.ok) throw new Error(self.connectUrl + ' answered ' + res.status);
        return res.text();
      })
      .then(function (text) {
        if (attempt !== self._attempt || self._stopped) return;
        self._abort = null;
        self._open(text.trim());
      })
      .catch(function (err) {
        if (attempt !== self._attempt || self._stopped) return;
        self._fail(4001, String(err && err.message ? err.message : err));
      });
  };

  /** Opens SockJS to a worker's URL and says hello on it. */
  Rohrpost.prototype._open = function (url) {
    var self = this;
    var sock = new this._SockJS(url, null, this.transports ? { transports: this.transports } : {});
    this._sock = sock;
    this._welcomed = false;
    this.url = url;
    sock.onopen = function () {
      if (self._sock !== sock) return;
      self.transport = sock.transport || null;
      sock.send(JSON.stringify(self._token ? { hello: 1, resume: self._token } : { hello: 1 }));
    };
    sock.onmessage = function (e) {
      if (self._sock !== sock) return;
      var msg;
      try {
        msg = JSON.parse(e.data);
      } catch (err) {
        return; // not a Rohrpost envelope (e.g. a 0.x `ok:<id>` answer)
      }
      if (!msg || typeof msg.topic !== 'string') return;
      if (msg.topic === WELCOME_TOPIC) self._welcome(msg.data);
      else if (msg.topic === ERROR_TOPIC) self._emit('error', msg.data);
      else self._deliver(msg.topic, msg.data);
    };
    sock.onclose = function (e) {
      if (self._sock !== sock) return;
      self._sock = null;
      self._fail(e.code, e.reason);
    };
  };

  /** The session is open: remember it, send the queue in order, then tell the handlers. */
  Rohrpost.prototype._welcome = function (data) {
    if (this._welcomed || !data || typeof data.session !== 'string') return;
    this._welcomed = true;
    this._cancelAttempt();
    var first = this.session === null;
    this.session = data.session;
    this.whitelist = Array.isArray(data.whitelist) ? data.whitelist : [];
    if (typeof data.resume === 'string') {
      this._token = data.resume;
      this._saveToken();
    }
    this._failures = 0;
    this._backoffs = 0;
    var queued = this._queue;
    this._queue = [];
    for (var i = 0; i < queued.length; i++) this._sock.send(queued[i]);
    this._setState('open');
    if (first) {
      this._emit('open', data);
    } else {
      this.reconnects += 1;
      this._emit('reconnect', { gap: this._lostAt === null ? 0 : Date.now() - this._lostAt, resumed: data.resumed === true });
    }
  };

  /**
   * The connection closed, or an attempt failed before its welcome: report it and schedule the
   * next attempt. `code` and `reason` are SockJS's close, or 4000 (attempt timed out) / 4001
   * (`connectUrl` failed) from the client itself.
   */
  Rohrpost.prototype._fail = function (code, reason) {
    if (this._stopped) return;
    var wasOpen = this.state === 'open';
    this._cancelAttempt();
    this._dropSocket(1000, 'giving up this attempt');
    if (wasOpen) this._lostAt = Date.now();
    this._setState(this.session ? 'reconnecting' : 'connecting');
    this._emit('close', { code: code, reason: reason, willReconnect: true });
    this._scheduleRetry(wasOpen && RESTART_CODES.indexOf(code) >= 0);
  };

  /**
   * Schedules the next attempt: at once when an open session's worker restarts (only the first
   * try after it, so a misbehaving server cannot make the client spin), else after a pause drawn
   * from [c/2, c] where the ceiling c doubles per pause from FIRST_BACKOFF up to `maxBackoff`.
   */
  Rohrpost.prototype._scheduleRetry = function (restart) {
    var self = this;
    if (this._stopped) return;
    var delay = 0;
    if (!restart || this._failures > 0) {
      var ceiling = Math.min(this.maxBackoff, FIRST_BACKOFF * Math.pow(2, this._backoffs));
      if (ceiling < this.maxBackoff) this._backoffs += 1;
      delay = ceiling / 2 + Math.random() * (ceiling / 2);
    }
    this._failures += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () { self._connect(); }, delay);
  };

  /**
   * Ends the current attempt's bookkeeping: its timer, its pending /connect request, and (by
   * moving the attempt id on) any callback of that request still to come.
   */
  Rohrpost.prototype._cancelAttempt = function () {
    this._attempt += 1;
    clearTimeout(this._attemptTimer);
    this._attemptTimer = null;
    if (this._abort) this._abort();
    this._abort = null;
  };

  /** Forgets the current socket (its late events are ignored) and closes it. */
  Rohrpost.prototype._dropSocket = function (code, reason) {
    var sock = this._sock;
    this._sock = null;
    if (sock) {
      try {
        sock.close(code, reason);
      } catch (err) {
        /* already closing */
      }
    }
  };

  Rohrpost.prototype._storageKey = function () {
    return 'rohrpost.resume:' + this.connectUrl;
  };

  Rohrpost.prototype._loadToken = function () {
    try {
      return (this.resume && root.sessionStorage && root.sessionStorage.getItem(this._storageKey())) || null;
    } catch (err) {
      return null; // storage forbidden (e.g. sandboxed frame): start a new session
    }
  };

  Rohrpost.prototype._saveToken = function () {
    try {
      if (this.resume && root.sessionStorage) root.sessionStorage.setItem(this._storageKey(), this._token);
    } catch (err) {
      /* storage full or forbidden: the token stays in memory */
    }
  };

  root.Rohrpost = Rohrpost;
  if (typeof module === 'object' && module && module.exports) {
    module.exports = { Rohrpost: Rohrpost, patternMatches: patternMatches };
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
