/*
 * rohrpost.js — the browser (and Node) client of Rohrpost.
 *
 *   const rp = new Rohrpost({connectUrl: '/connect'});
 *   rp.on('chat.room.*', (data, topic) => render(topic, data));
 *   rp.on('error', err => console.warn(err.code, err.message));
 *   rp.publish('chat.room.lobby', {text: 'hi'});
 *
 * It asks `connectUrl` for a worker, opens SockJS (sockjs-client 1.x: the page's global `SockJS`,
 * or the `SockJS` option) to it, says hello (resuming its session when it has a token), and
 * reconnects by itself: at once when a worker restarts (close code 1012, or 0.x's 100), else with
 * exponential backoff and jitter, always through `connectUrl` again so a dead worker is skipped.
 * Messages published while not connected are queued and sent in order once the session is open.
 *
 * Use it as a plain script (`<script src="/js/rohrpost.js">` defines `Rohrpost`), as an ES
 * module (`import {Rohrpost} from '/js/rohrpost.mjs'`), or under Node (`require`).
 * Dependency-free apart from sockjs-client.
 */
(function (root) {
  'use strict';

  /** Close codes after which the client reconnects at once (a worker restarts). */
  var RESTART_CODES = [1012, 100];
  /** Names `on()` treats as client events rather than topics. */
  var EVENTS = ['open', 'reconnect', 'close', 'error', 'state'];
  var WELCOME = 'rohrpost.welcome';
  var ERROR = 'rohrpost.error';

  /**
   * Whether `topic` matches `pattern`: `*` is any run of characters (dots included), every
   * other character is literal — the server's rule.
   * @param {string} pattern
   * @param {string} topic
   * @returns {boolean}
   */
  function patternMatches(pattern, topic) {
    var p = 0, t = 0, starP = -1, starT = 0;
    while (t < topic.length) {
      if (p < pattern.length && pattern[p] === '*') {
        starP = p++;
        starT = t;
      } else if (p < pattern.length && pattern[p] === topic[t]) {
        p++;
        t++;
      } else if (starP >= 0) {
        p = starP + 1;
        t = ++starT;
      } else {
        return false;
      }
    }
    while (p < pattern.length && pattern[p] === '*') p++;
    return p === pattern.length;
  }

  /**
   * @param {object} options
   * @param {string} options.connectUrl  URL of the server's /connect
   * @param {string[]} [options.transports]  SockJS transports to allow (default: all)
   * @param {boolean} [options.resume=true]  keep the session across page reloads (sessionStorage)
   * @param {number} [options.maxBackoff=30000]  longest pause between reconnect tries, in ms
   * @param {Function} [options.SockJS]  the SockJS constructor (default: the global one)
   * @param {Function} [options.fetch]  the fetch function (default: the global one)
   */
  function Rohrpost(options) {
    if (!(this instanceof Rohrpost)) return new Rohrpost(options);
    if (!options || !options.connectUrl) throw new Error('Rohrpost: connectUrl is required');
    this.connectUrl = options.connectUrl;
    this.transports = options.transports;
    this.resume = options.resume !== false;
    this.maxBackoff = options.maxBackoff || 30000;
    this._SockJS = options.SockJS || root.SockJS;
    this._fetch = options.fetch || (root.fetch && root.fetch.bind(root));
    if (!this._SockJS) throw new Error('Rohrpost: sockjs-client is not loaded');
    if (!this._fetch) throw new Error('Rohrpost: no fetch function');

    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'closed';
    /** The session id, once welcomed. */
    this.session = null;
    /** The worker URL in use, and the SockJS transport it runs on. */
    this.url = null;
    this.transport = null;
    /** Patterns the session may use, as of the last welcome. */
    this.whitelist = [];
    /** How many times the client reconnected. */
    this.reconnects = 0;

    this._handlers = [];
    this._queue = [];
    this._sock = null;
    this._attempt = 0;
    this._closedAt = null;
    this._stopped = false;
    this._timer = null;
    this._token = this._loadToken();
    this._connect();
  }

  Rohrpost.patternMatches = patternMatches;

  /**
   * Calls `fn(data, topic)` for messages whose topic matches `topicOrPattern`, or for one of the
   * client events: 'open' (welcome data), 'reconnect' ({gap, resumed}), 'close' ({code, reason}),
   * 'error' ({code, message, topic?} from the server), 'state' (the new state).
   */
  Rohrpost.prototype.on = function (topicOrPattern, fn) {
    this._handlers.push({ pattern: topicOrPattern, fn: fn, once: false });
    return this;
  };

  /** Like `on`, for the first matching message or event only. */
  Rohrpost.prototype.once = function (topicOrPattern, fn) {
    this._handlers.push({ pattern: topicOrPattern, fn: fn, once: true });
    return this;
  };

  /** Removes handlers of `topicOrPattern` (all of them, or only `fn`). */
  Rohrpost.prototype.off = function (topicOrPattern, fn) {
    this._handlers = this._handlers.filter(function (h) {
      return !(h.pattern === topicOrPattern && (!fn || h.fn === fn));
    });
    return this;
  };

  /** Sends `data` on `topic`; queued (in order) while the session is not open. */
  Rohrpost.prototype.publish = function (topic, data) {
    var text = JSON.stringify({ topic: topic, data: data === undefined ? null : data });
    if (this.state === 'open' && this._queue.length === 0) {
      this._sock.send(text);
    } else {
      this._queue.push(text);
    }
    return this;
  };

  /** Closes for good: no reconnects; queued messages are dropped. */
  Rohrpost.prototype.close = function () {
    this._stopped = true;
    clearTimeout(this._timer);
    this._queue = [];
    if (this._sock) this._sock.close(1000, 'client closed');
    this._setState('closed');
  };

  Rohrpost.prototype._emitEvent = function (name, value) {
    this._dispatch(name, value, true);
  };

  Rohrpost.prototype._dispatch = function (topic, data, isEvent) {
    var self = this;
    this._handlers.slice().forEach(function (h) {
      var event = EVENTS.indexOf(h.pattern) >= 0;
      var hit = isEvent ? event && h.pattern === topic : !event && patternMatches(h.pattern, topic);
      if (!hit) return;
      if (h.once) self._handlers.splice(self._handlers.indexOf(h), 1);
      try {
        h.fn.call(self, data, topic);
      } catch (e) {
        setTimeout(function () { throw e; });
      }
    });
  };

  Rohrpost.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this._emitEvent('state', state);
  };

  Rohrpost.prototype._connect = function () {
    var self = this;
    if (this._stopped) return;
    this._setState(this.session ? 'reconnecting' : 'connecting');
    this._fetch(this.connectUrl, { cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('/connect answered ' + res.status);
        return res.text();
      })
      .then(function (url) {
        if (self._stopped) return;
        self._open(url.trim());
      })
      .catch(function () {
        self._retry(false);
      });
  };

  Rohrpost.prototype._open = function (url) {
    var self = this;
    var options = this.transports ? { transports: this.transports } : {};
    var sock = new this._SockJS(url, null, options);
    this._sock = sock;
    this.url = url;
    sock.onopen = function () {
      self.transport = sock.transport || null;
      var hello = self._token ? { hello: 1, resume: self._token } : { hello: 1 };
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = function (e) {
      var msg;
      try {
        msg = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      if (msg.topic === WELCOME) self._welcome(msg.data);
      else if (msg.topic === ERROR) self._emitEvent('error', msg.data);
      else self._dispatch(msg.topic, msg.data, false);
    };
    sock.onclose = function (e) {
      if (self._sock !== sock) return;
      self._sock = null;
      if (self._stopped) return;
      self._closedAt = Date.now();
      self._emitEvent('close', { code: e.code, reason: e.reason });
      self._retry(RESTART_CODES.indexOf(e.code) >= 0);
    };
  };

  Rohrpost.prototype._welcome = function (data) {
    var first = this.session === null;
    this._token = data.resume;
    this._saveToken();
    this.session = data.session;
    this.whitelist = data.whitelist || [];
    this._attempt = 0;
    this._setState('open');
    if (first) {
      this._emitEvent('open', data);
    } else {
      this.reconnects += 1;
      var gap = this._closedAt ? Date.now() - this._closedAt : 0;
      this._emitEvent('reconnect', { gap: gap, resumed: data.resumed });
    }
    var queued = this._queue;
    this._queue = [];
    for (var i = 0; i < queued.length; i++) this._sock.send(queued[i]);
  };

  /** Schedules the next try: at once after a restart close, else backoff with jitter. */
  Rohrpost.prototype._retry = function (immediately) {
    var self = this;
    if (this._stopped) return;
    this._setState(this.session ? 'reconnecting' : 'connecting');
    var delay = 0;
    if (!immediately) {
      var base = Math.min(this.maxBackoff, 250 * Math.pow(2, this._attempt));
      delay = base / 2 + Math.random() * (base / 2);
      this._attempt += 1;
    }
    clearTimeout(this._timer);
    this._timer = setTimeout(function () { self._connect(); }, delay);
  };

  Rohrpost.prototype._storageKey = function () {
    return 'rohrpost.resume:' + this.connectUrl;
  };

  Rohrpost.prototype._loadToken = function () {
    try {
      return this.resume && root.sessionStorage ? root.sessionStorage.getItem(this._storageKey()) : null;
    } catch (e) {
      return null;
    }
  };

  Rohrpost.prototype._saveToken = function () {
    try {
      if (this.resume && root.sessionStorage) root.sessionStorage.setItem(this._storageKey(), this._token);
    } catch (e) {
      /* storage full or forbidden: the token stays in memory */
    }
  };

  root.Rohrpost = Rohrpost;
  if (typeof module === 'object' && module && module.exports) {
    module.exports = { Rohrpost: Rohrpost, patternMatches: patternMatches };
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
