/*
 * rohrpost.js — the browser (and Node) client of Rohrpost.
 *
 *   const rp = new Rohrpost({connectUrl: '/connect'});
 *   rp.on('chat.room.*', (data, topic) => render(topic, data));
 *   rp.on('error', err => console.warn(err.code, err.message));
 *   rp.on('gap', gap => reloadHistory());  // messages may be missing: resynchronise
 *   rp.publish('chat.room.lobby', {text: 'hi'}).then(ack => ..., err => console.warn(err.code));
 *
 * One connection attempt: GET `connectUrl` (plain text: the SockJS URL of the least-loaded
 * worker) → open SockJS there → send `{"hello": 1}`, or `{"hello": 1, "resume": token, "since":
 * pos}` when a token is known → the server answers on `rohrpost.welcome` with `{session, resume,
 * resumed, whitelist, pos, recovered}` → the session is open: unacknowledged messages are sent,
 * in the order they were published.
 *
 * Delivery you can count on (the server's side is in the README's protocol section):
 *   - Positions. The client keeps the last position (`pos`, an opaque string) the server
 *     named — in the welcome, in any message carrying one, in a `rohrpost.pos` notice — in
 *     memory and, beside the resume token, in `sessionStorage`. A resume sends it as `since`;
 *     the server then replays what the session missed (`recovered: true`) or says it cannot
 *     (`recovered: false`), and the client reports that in its `reconnect` event and as a
 *     `gap` event, as it does a `rohrpost.pos` notice with `recovered: false`.
 *   - Acknowledged publishing. Every published message carries an `id` (this client's random
 *     prefix and a counter) and stays in the ordered send queue until the server answers it on
 *     `rohrpost.ack` or `rohrpost.error`; after a reconnect every unanswered one is sent again,
 *     with the same id and in publish order, so a backend that drops repeated `messageId`s gets
 *     each exactly once. `publish` returns a promise of that answer.
 *   - One session, one connection. When another connection resumes this session, the server
 *     closes this one with 4001 ("Session resumed elsewhere"); the client then forgets the
 *     token and position and starts a new session (a duplicated browser tab copies
 *     `sessionStorage`: the two tabs end up with a session each instead of fighting over one).
 *
 * Authentication: with the `token` option (a string, or a function returning one or a promise of
 * one, asked again for every hello) the hello carries `"token"`, which the server verifies or
 * hands to its connect hook; a refused session is closed (4003, or the hook's code) and retried
 * like any other close. `refresh(token)` replaces the token before it expires (close 4004 if it
 * does), answered by a 'refresh' event or an `unauthorized` error.
 *
 * When the connection is lost the client tries again, always through `connectUrl`, so a dead or
 * draining worker is skipped: at once after a worker restart (close code 1012, or Rohrpost 0.x's
 * 100), otherwise after an exponential backoff with jitter, capped at `maxBackoff`. It never gives
 * up by itself; only `close()` (which ends the session for good: it says goodbye, `{"bye": 1}`)
 * or a kick by the server (close 4005) stops it. Every attempt is bounded by `connectTimeout`.
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
  /**
   * The server's close of a connection whose session another connection resumed: reconnect at
   * once, with a new session. (The client's own 4001, "/connect failed", never comes from a
   * socket, so the two cannot be confused here.)
   */
  var TAKEOVER_CODE = 4001;
  /** The server's close of a kicked session (`DELETE /api/sessions/{id}`): it may not resume. */
  var KICKED_CODE = 4005;
  /** Names `on()` takes as client events; anything else is a topic pattern. */
  var EVENTS = ['open', 'reconnect', 'close', 'error', 'state', 'gap', 'takeover', 'refresh', 'kicked'];
  var WELCOME_TOPIC = 'rohrpost.welcome';
  var ERROR_TOPIC = 'rohrpost.error';
  var ACK_TOPIC = 'rohrpost.ack';
  var POS_TOPIC = 'rohrpost.pos';
  var REFRESHED_TOPIC = 'rohrpost.refreshed';
  /** The client's own close code when the `token` function failed (the attempt is retried). */
  var TOKEN_FAILED_CODE = 4002;
  /** The error code of a message whose fate the server does not know: resent with its id. */
  var UNCERTAIN_CODE = 'backend_uncertain';
  /** ms before the first resend of a `backend_uncertain` message; doubles per resend. */
  var FIRST_UNCERTAIN_RETRY = 500;
  /** SockJS's (and WebSocket's) readyState of an open connection. */
  var SOCK_OPEN = 1;
  /** The first backoff ceiling, in ms; it doubles per failed attempt up to `maxBackoff`. */
  var FIRST_BACKOFF = 250;

  var DEFAULTS = {
    resume: true,
    maxBackoff: 30000,
    connectTimeout: 15000,
    maxQueue: 1000,
    uncertainRetries: 3
  };

  /** The handler that marks a publish promise as handled, so that ignoring it reports nothing. */
  function noop() {}

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
   * @param {boolean} [options.resume=true]  also keep the resume token and the last position in
   *   `sessionStorage`, so a page reload continues the session where it was (reconnects resume
   *   from memory either way)
   * @param {number} [options.maxBackoff=30000]  longest pause between attempts, in ms
   * @param {number} [options.connectTimeout=15000]  longest one attempt (/connect, SockJS open,
   *   welcome) may take before it is abandoned and retried, in ms
   * @param {number} [options.maxQueue=1000]  most published messages kept until the server
   *   answers them (waiting for the connection, or sent and not yet acknowledged); more are
   *   refused with an `error` event and a rejected promise (`queue_full`)
   * @param {number} [options.uncertainRetries=3]  how many times a message the server answers
   *   with `backend_uncertain` is sent again (same id; after 500, 1000, 2000 ms…) before its
   *   promise is rejected with that error; 0 rejects at once
   * @param {string|function(): (string|Promise<string>)} [options.token]  sent in every hello as
   *   `token` (a JWT, or what the server's connect hook understands); a function is called for
   *   each hello, so that a reconnect gets a fresh token
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
    /** Whether the resume token and the last position are also kept in `sessionStorage`. */
    this.resume = pick(options, 'resume') !== false;
    this.maxBackoff = positive(options, 'maxBackoff', 'ms');
    this.connectTimeout = positive(options, 'connectTimeout', 'ms');
    this.maxQueue = positive(options, 'maxQueue', 'messages');
    this.uncertainRetries = count(options, 'uncertainRetries');
    if (options.token !== undefined && typeof options.token !== 'string' && typeof options.token !== 'function') {
      throw new TypeError('Rohrpost: the token option must be a string or a function');
    }
    /** Where hellos get their token: a string, a function, or undefined. */
    this._tokenSource = options.token;
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
    /**
     * The last position the server named (an opaque string), or null: where the session is
     * caught up to. Updated before the handlers of the message that carried it run.
     */
    this.pos = null;

    this._handlers = [];
    this._queue = []; // published messages not yet answered (see `publish`), oldest first
    this._idPrefix = randomPrefix();
    this._published = 0; // messages published so far: the counter in their ids
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
    // The storage is looked up once: the page's own, even if the global changes later.
    this._storage = this.resume ? sessionStorageOf(root) : null;
    this._token = this._load('resume');
    this.pos = this._token ? this._load('pos') : null;
    this._connect();
  }

  function pick(options, name) {
    return options[name] === undefined ? DEFAULTS[name] : options[name];
  }

  function positive(options, name, unit) {
    var value = pick(options, name);
    if (typeof value !== 'number' || !(value > 0)) {
      throw new TypeError('Rohrpost: the ' + name + ' option must be a positive number of ' + unit);
    }
    return value;
  }

  function count(options, name) {
    var value = pick(options, name);
    if (typeof value !== 'number' || !(value >= 0) || Math.floor(value) !== value) {
      throw new TypeError('Rohrpost: the ' + name + ' option must be a whole number (0 or more)');
    }
    return value;
  }

  /** The page's `sessionStorage`, or null where there is none or it is forbidden (sandboxed frames). */
  function sessionStorageOf(scope) {
    try {
      return scope.sessionStorage || null;
    } catch (err) {
      return null;
    }
  }

  /**
   * The start of every message id of one client: 20 random hex digits and a dash, so that ids
   * from different pages do not collide at a backend that deduplicates by `messageId`.
   */
  function randomPrefix() {
    var bytes = null;
    try {
      if (root.crypto && typeof root.crypto.getRandomValues === 'function') bytes = root.crypto.getRandomValues(new Uint8Array(10));
    } catch (err) {
      bytes = null; // no usable crypto: Math.random below
    }
    var prefix = '';
    for (var i = 0; i < 10; i++) {
      var byte = bytes ? bytes[i] : Math.floor(Math.random() * 256) & 255;
      prefix += (byte < 16 ? '0' : '') + byte.toString(16);
    }
    return prefix + '-';
  }

  /** The reason a publish promise is rejected with: an Error carrying the server's fields. */
  function publishError(data) {
    var err = new Error(data.message || data.code);
    err.code = data.code;
    err.topic = data.topic;
    err.id = data.id;
    return err;
  }

  /** The matcher `on()` uses, exposed for tests and for routing of one's own. */
  Rohrpost.patternMatches = patternMatches;

  /**
   * Calls `fn(data, topic)` for every message whose topic matches `topicOrPattern`, or for a
   * client event:
   *   - 'open': the first welcome's data (on a page reload that resumed, with the server's
   *     `resumed` and `recovered`);
   *   - 'reconnect' (`{gap, resumed, recovered}`): every later welcome; `gap` is the ms between
   *     losing the connection and the welcome, `resumed` whether it is the same session,
   *     `recovered` whether the server replays every message the session missed (always false
   *     for a new session, or when the server keeps no history);
   *   - 'gap' (`{cause, pos}`): messages may be missing, resynchronise from the backend — after
   *     a reconnect that did not recover (`cause: 'reconnect'`, with the same 'reconnect' event
   *     before it), or on a `rohrpost.pos` notice with `recovered: false` (`cause: 'notice'`: the
   *     server lost messages, e.g. its broker's log); never for the first welcome;
   *   - 'takeover' (`{session, code, reason}`): another connection resumed this session (close
   *     4001); the client has forgotten the token and position and starts a new session, which
   *     arrives as a 'reconnect' with `resumed: false`;
   *   - 'close' (`{code, reason, willReconnect}`): every lost connection or failed attempt;
   *   - 'error' (`{code, message, topic?, id?}`): from `rohrpost.error` (a `backend_uncertain`
   *     one only once its retries are used up), or the client's own `queue_full` / `closed`;
   *   - 'refresh' (`{exp}`): the server took the token of `refresh()`; it expires at `exp`
   *     (Unix seconds);
   *   - 'kicked' (`{session, code, reason}`): the server ended the session for good (close
   *     4005); the client stops as after `close()` (the 'close' event says `willReconnect: false`);
   *   - 'state': the new state.
   * `rohrpost.welcome`, `.error`, `.ack` and `.pos` are the client's own; they reach no pattern.
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
   * Sends `data` (any JSON value; `undefined` becomes null) on `topic`, with an `id` of its own
   * (the backend receives it as `messageId`). The message stays in the ordered send queue until
   * the server answers it: while the session is not open it waits, and after every welcome all
   * unanswered messages are sent (again, if they went out on a connection that was lost before
   * the answer), with their ids, in publish order. A message may thus reach the backend more
   * than once; a backend that drops repeated `messageId`s gets each once.
   *
   * The promise resolves with `{id, topic}` on the server's `rohrpost.ack`, and rejects with an
   * Error carrying `code`, `message`, `topic` and `id` on a `rohrpost.error` for the message, on
   * `queue_full` (more than `maxQueue` unanswered) and on `closed` (published after `close()`,
   * or unanswered when `close()` came). `backend_uncertain` (the server does not know whether
   * the backend took it) is not final: the message is sent again with the same id, up to
   * `uncertainRetries` times (500 ms, then 1 s, 2 s, … apart), and only then rejected. A message
   * resent that way may reach the backend after messages published later.
   *
   * Every rejection is also an `error` event, and the promise never counts as unhandled: a
   * caller that ignores it loses nothing it had before.
   * @param {string} topic
   * @param {*} [data]
   * @returns {Promise<{id: string, topic: string}>}
   */
  Rohrpost.prototype.publish = function (topic, data) {
    if (typeof topic !== 'string' || !topic) throw new TypeError('Rohrpost.publish: topic must be a non-empty string');
    this._published += 1;
    var id = this._idPrefix + this._published;
    var entry = {
      id: id,
      topic: topic,
      text: JSON.stringify({ topic: topic, data: data === undefined ? null : data, id: id }),
      sent: false, // whether it went out on the current connection
      everSent: false, // whether it went out at all (it may then have reached the backend)
      retries: 0, // resends after backend_uncertain
      timer: null, // the pending backend_uncertain resend
      resolve: null,
      reject: null
    };
    var answer = new Promise(function (resolve, reject) {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    answer.catch(noop);
    if (this._stopped) {
      this._refuse(entry, 'closed', 'publish after close(): not sent');
    } else if (this._queue.length >= this.maxQueue) {
      this._refuse(entry, 'queue_full', 'not sent: ' + this.maxQueue + ' messages already wait for their acknowledgement');
    } else {
      this._queue.push(entry);
      // When open, every earlier message is out already, so sending now keeps publish order.
      if (this._isOpen()) this._send(entry);
    }
    return answer;
  };

  /**
   * Replaces the session's token before it expires: sends `{"refresh": token}` when open (the
   * server answers with a 'refresh' event, or an `unauthorized` error and the old token stays),
   * and, unless the `token` option is a function, later hellos carry this token.
   * @param {string} token
   * @returns {Rohrpost} this
   */
  Rohrpost.prototype.refresh = function (token) {
    if (typeof token !== 'string' || !token) throw new TypeError('Rohrpost.refresh: a token string is required');
    if (typeof this._tokenSource !== 'function') this._tokenSource = token;
    if (this._isOpen()) this._sock.send(JSON.stringify({ refresh: token }));
    return this;
  };

  /**
   * Closes for good: no more attempts, later publishes are refused. Unanswered messages are
   * dropped: their promises reject with `closed` (no `error` events), saying whether each was
   * sent (it may then have reached the backend) or not. Emits 'state' ('closed') and 'close'
   * (`{code: 1000, willReconnect: false}`) once. The session ends with it: the client says
   * goodbye (`{"bye": 1}`) and forgets its resume token. With `{resumable: true}` it does
   * neither: the session can still be resumed, within `sessions.resume_grace`, by the next page
   * of the tab (as after a reload, which calls nothing).
   */
  Rohrpost.prototype.close = function (options) {
    if (this._stopped) return;
    if (options && options.resumable) {
      // No goodbye: the session lives on for `sessions.resume_grace`, and the next page of this
      // tab (with the same `connectUrl`) resumes it from sessionStorage.
      this._stop(1000, 'client closed');
      return;
    }
    // Goodbye: the session ends at once (the server's `session.closed`, reason "closed")
    // instead of lingering for `sessions.resume_grace`, and may not be resumed.
    if (this._sock && this.state === 'open') {
      try {
        this._sock.send(JSON.stringify({ bye: 1 }));
      } catch (err) {
        /* already closing: the session ends when its grace runs out */
      }
    }
    this._forget();
    this._stop(1000, 'client closed');
  };

  /** Stops for good (see `close()`), telling 'close' with `code` and `reason`. */
  Rohrpost.prototype._stop = function (code, reason) {
    this._stopped = true;
    this._cancelAttempt();
    clearTimeout(this._retryTimer);
    var dropped = this._queue;
    this._queue = [];
    dropped.forEach(function (entry) {
      clearTimeout(entry.timer);
      entry.reject(publishError({
        code: 'closed',
        message: entry.everSent
          ? 'close() before its acknowledgement: it may or may not have reached the backend'
          : 'close() before it was sent: not sent',
        topic: entry.topic,
        id: entry.id
      }));
    });
    this._dropSocket(1000, 'client closed');
    this._setState('closed');
    this._emit('close', { code: code, reason: reason, willReconnect: false });
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

  /** Sends a queued message on the current (open) socket; it stays queued until answered. */
  Rohrpost.prototype._send = function (entry) {
    clearTimeout(entry.timer);
    entry.timer = null;
    entry.sent = true;
    entry.everSent = true;
    this._sock.send(entry.text);
  };

  /** A publish the client itself refuses: an `error` event and a rejected promise. */
  Rohrpost.prototype._refuse = function (entry, code, message) {
    var error = { code: code, message: message, topic: entry.topic, id: entry.id };
    this._emit('error', error);
    entry.reject(publishError(error));
  };

  /** Where the queued message with `id` is, or -1 (answers mostly come oldest first). */
  Rohrpost.prototype._queued = function (id) {
    if (typeof id !== 'string') return -1;
    for (var i = 0; i < this._queue.length; i++) {
      if (this._queue[i].id === id) return i;
    }
    return -1;
  };

  /** `rohrpost.ack`: the broker or HTTP backend took the message; an unknown id is a repeat. */
  Rohrpost.prototype._ack = function (data) {
    var at = this._queued(data && data.id);
    if (at < 0) return;
    var entry = this._queue.splice(at, 1)[0];
    clearTimeout(entry.timer);
    entry.resolve({ id: entry.id, topic: entry.topic });
  };

  /**
   * `rohrpost.error`: an `error` event, and the end of the message it names — except for
   * `backend_uncertain` while the message has resends left: then it goes out again later.
   */
  Rohrpost.prototype._error = function (data) {
    var at = this._queued(data && data.id);
    if (at < 0) {
      this._emit('error', data);
      return;
    }
    var entry = this._queue[at];
    if (data.code === UNCERTAIN_CODE && entry.retries < this.uncertainRetries) {
      this._resendLater(entry);
      return;
    }
    this._queue.splice(at, 1);
    clearTimeout(entry.timer);
    this._emit('error', data);
    entry.reject(publishError(data));
  };

  /**
   * Sends a `backend_uncertain` message again, with its id, after a pause that doubles per
   * resend. If the connection is not open then, the next welcome sends it with the rest.
   */
  Rohrpost.prototype._resendLater = function (entry) {
    var self = this;
    var delay = FIRST_UNCERTAIN_RETRY * Math.pow(2, entry.retries);
    entry.retries += 1;
    entry.sent = false;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(function () {
      entry.timer = null;
      if (!entry.sent && self._isOpen() && self._queue.indexOf(entry) >= 0) self._send(entry);
    }, delay);
  };

  /** `rohrpost.pos`: caught up to `pos`; `recovered: false` says messages were lost. */
  Rohrpost.prototype._position = function (data) {
    if (!data) return;
    if (typeof data.pos === 'string') this._setPos(data.pos);
    if (data.recovered === false) this._emit('gap', { cause: 'notice', pos: this.pos });
  };

  /** Remembers the last position, in memory and (when `resume` is on) in `sessionStorage`. */
  Rohrpost.prototype._setPos = function (pos) {
    if (this.pos === pos) return;
    this.pos = pos;
    this._store('pos', pos);
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
      self._withToken(function (token) {
        if (self._sock === sock) sock.send(JSON.stringify(self._hello(token)));
      });
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
      if (typeof msg.pos === 'string') self._setPos(msg.pos);
      if (msg.topic === WELCOME_TOPIC) self._welcome(msg.data);
      else if (msg.topic === ERROR_TOPIC) self._error(msg.data);
      else if (msg.topic === ACK_TOPIC) self._ack(msg.data);
      else if (msg.topic === POS_TOPIC) self._position(msg.data);
      else if (msg.topic === REFRESHED_TOPIC) self._emit('refresh', msg.data);
      else self._deliver(msg.topic, msg.data);
    };
    sock.onclose = function (e) {
      if (self._sock !== sock) return;
      self._sock = null;
      if (e.code === KICKED_CODE) {
        var session = self.session;
        self._forget();
        self._stop(e.code, e.reason);
        self._emit('kicked', { session: session, code: e.code, reason: e.reason });
        return;
      }
      var takeover = e.code === TAKEOVER_CODE;
      if (takeover) self._forget();
      self._fail(e.code, e.reason, true);
      if (takeover) self._emit('takeover', { session: self.session, code: e.code, reason: e.reason });
    };
  };

  /**
   * The handshake: resume with the resume token and the last position when there is one; with
   * `token` (authentication) when given.
   */
  Rohrpost.prototype._hello = function (token) {
    var hello = { hello: 1 };
    if (this._token) {
      hello.resume = this._token;
      if (this.pos !== null) hello.since = this.pos;
    }
    if (typeof token === 'string' && token) hello.token = token;
    return hello;
  };

  /**
   * Calls `send(token)` with the token for this attempt's hello: at once for a string (or
   * none), once a token function's answer is in. A function that throws, rejects or gives no
   * string fails the attempt (close 4002, the client's own), which is retried like any other.
   */
  Rohrpost.prototype._withToken = function (send) {
    var self = this;
    var source = this._tokenSource;
    if (typeof source !== 'function') {
      send(source);
      return;
    }
    var attempt = this._attempt;
    var answer;
    try {
      answer = Promise.resolve(source());
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer
      .then(function (token) {
        if (attempt !== self._attempt || self._stopped) return;
        if (typeof token !== 'string' || !token) throw new TypeError('the token function gave no string');
        send(token);
      })
      .catch(function (err) {
        if (attempt !== self._attempt || self._stopped) return;
        self._fail(TOKEN_FAILED_CODE, 'token: ' + (err && err.message ? err.message : String(err)));
      });
  };

  /**
   * Forgets the session's token and position (memory and storage), so the next hello starts a
   * new session. `session` stays until that session's welcome.
   */
  Rohrpost.prototype._forget = function () {
    this._token = null;
    this._store('resume', null);
    this._setPos(null);
  };

  /**
   * The session is open: remember it and its position, send every unanswered message in order
   * (those sent before on a lost connection again, with their ids), then tell the handlers.
   */
  Rohrpost.prototype._welcome = function (data) {
    if (this._welcomed || !data || typeof data.session !== 'string') return;
    this._welcomed = true;
    this._cancelAttempt();
    var first = this.session === null;
    var resumed = data.resumed === true;
    var recovered = resumed && data.recovered === true;
    this.session = data.session;
    this.whitelist = Array.isArray(data.whitelist) ? data.whitelist : [];
    if (typeof data.resume === 'string') {
      this._token = data.resume;
      this._store('resume', this._token);
    }
    this._setPos(typeof data.pos === 'string' ? data.pos : null);
    this._failures = 0;
    this._backoffs = 0;
    for (var i = 0; i < this._queue.length; i++) this._send(this._queue[i]);
    this._setState('open');
    if (first) {
      this._emit('open', data);
    } else {
      this.reconnects += 1;
      this._emit('reconnect', {
        gap: this._lostAt === null ? 0 : Date.now() - this._lostAt,
        resumed: resumed,
        recovered: recovered
      });
      if (!recovered) this._emit('gap', { cause: 'reconnect', pos: this.pos });
    }
  };

  /**
   * The connection closed, or an attempt failed before its welcome: report it and schedule the
   * next attempt. `code` and `reason` are SockJS's close (`byServer`), or 4000 (attempt timed
   * out) / 4001 (`connectUrl` failed) / 4002 (the `token` function failed) from the client
   * itself. Messages sent on the lost
   * connection stay queued, to be sent again after the next welcome.
   */
  Rohrpost.prototype._fail = function (code, reason, byServer) {
    if (this._stopped) return;
    var wasOpen = this.state === 'open';
    this._cancelAttempt();
    this._dropSocket(1000, 'giving up this attempt');
    for (var i = 0; i < this._queue.length; i++) this._queue[i].sent = false;
    if (wasOpen) this._lostAt = Date.now();
    this._setState(this.session ? 'reconnecting' : 'connecting');
    this._emit('close', { code: code, reason: reason, willReconnect: true });
    this._scheduleRetry(wasOpen && byServer === true && (RESTART_CODES.indexOf(code) >= 0 || code === TAKEOVER_CODE));
  };

  /**
   * Schedules the next attempt: at once when an open session's worker restarts or its session
   * was taken over (only the first try after it, so a misbehaving server cannot make the client
   * spin), else after a pause drawn
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

  /** `sessionStorage` keys, one per `connectUrl`: `what` is 'resume' (the token) or 'pos'. */
  Rohrpost.prototype._storageKey = function (what) {
    return 'rohrpost.' + what + ':' + this.connectUrl;
  };

  Rohrpost.prototype._load = function (what) {
    try {
      return (this._storage && this._storage.getItem(this._storageKey(what))) || null;
    } catch (err) {
      return null; // storage forbidden: start a new session
    }
  };

  /** Stores `value` under `what`, or removes it when null. */
  Rohrpost.prototype._store = function (what, value) {
    if (!this._storage) return;
    try {
      if (value !== null) this._storage.setItem(this._storageKey(what), value);
      else if (typeof this._storage.removeItem === 'function') this._storage.removeItem(this._storageKey(what));
      else this._storage.setItem(this._storageKey(what), '');
    } catch (err) {
      /* storage full or forbidden: the value stays in memory */
    }
  };

  root.Rohrpost = Rohrpost;
  if (typeof module === 'object' && module && module.exports) {
    module.exports = { Rohrpost: Rohrpost, patternMatches: patternMatches };
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
