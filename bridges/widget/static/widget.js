/*
 * handoff chat widget: one <script src="https://host/widget.js" async></script> on any page.
 * Vanilla JS, no build step. Talks to the origin it was loaded from (the support service), not
 * the page's, so it works on the store's own site. Every text is inserted with textContent, never
 * as HTML. The conversation id and token live in localStorage, so a reload keeps the chat;
 * history is reloaded from the server (after the last id seen, a page at a time) on every
 * connect. A logged-in shopper: data-email plus data-user-hash (the store's HMAC of it).
 * When the service says "too many" (429, or an error frame with retry_after) the widget says so
 * calmly and tries again by itself after the time it was given.
 */
(function () {
  "use strict";
  if (window.HandoffWidget) return;

  var script = document.currentScript || (function () {
    var all = document.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) if (/widget\.js(\?|$)/.test(all[i].src)) return all[i];
    return null;
  })();
  var ORIGIN = script ? new URL(script.src, location.href).origin : location.origin;
  var opts = script ? script.dataset : {};
  var KEY = "handoff.conversation";
  var MAX = 4000;

  var css = [
    ".hw-launcher{position:fixed;right:18px;bottom:18px;width:58px;height:58px;border-radius:50%;border:0;background:#1d4ed8;color:#fff;font-size:26px;box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer;z-index:2147483000}",
    ".hw-panel{position:fixed;right:18px;bottom:88px;width:360px;max-width:calc(100vw - 24px);height:540px;max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.25);display:none;flex-direction:column;overflow:hidden;z-index:2147483000;font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2937}",
    ".hw-panel.hw-open{display:flex}",
    ".hw-head{background:#1d4ed8;color:#fff;padding:12px 14px;display:flex;align-items:center;justify-content:space-between}",
    ".hw-head button{background:none;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}",
    ".hw-status{font-size:13px;padding:6px 12px;background:#fef3c7;color:#92400e;display:none}",
    ".hw-status.hw-show{display:block}",
    ".hw-messages{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f8fafc}",
    ".hw-msg{max-width:82%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}",
    ".hw-msg .hw-who{display:block;font-size:11px;font-weight:600;opacity:.7;margin-bottom:2px}",
    ".hw-msg .hw-src{display:block;font-size:11px;opacity:.65;margin-top:4px}",
    ".hw-msg[data-role=shopper]{align-self:flex-end;background:#1d4ed8;color:#fff;border-bottom-right-radius:4px}",
    ".hw-msg[data-role=agent]{align-self:flex-start;background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}",
    ".hw-msg[data-role=human]{align-self:flex-start;background:#dcfce7;border:1px solid #86efac;border-bottom-left-radius:4px}",
    ".hw-msg[data-role=system]{align-self:center;background:none;color:#6b7280;font-size:13px;text-align:center}",
    ".hw-msg.hw-pending{opacity:.6}",
    ".hw-typing{font-size:13px;color:#6b7280;padding:0 14px 6px;display:none;background:#f8fafc}",
    ".hw-typing.hw-show{display:block}",
    ".hw-form{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e7eb;background:#fff}",
    ".hw-form textarea{flex:1;resize:none;border:1px solid #d1d5db;border-radius:10px;padding:8px;font:inherit;height:42px}",
    ".hw-form button{border:0;border-radius:10px;background:#1d4ed8;color:#fff;padding:0 14px;font:inherit;cursor:pointer}",
    ".hw-note{font-size:12px;color:#b91c1c;padding:0 12px 6px;display:none}",
    ".hw-note.hw-show{display:block}",
    ".hw-note.hw-calm{color:#4b5563}",
    ".hw-rate{align-self:center;display:flex;gap:10px}",
    ".hw-rate button{font-size:20px;background:#fff;border:1px solid #d1d5db;border-radius:20px;padding:2px 12px;cursor:pointer}",
    "@media (max-width:480px){.hw-panel{right:0;bottom:0;width:100vw;max-width:100vw;height:100%;max-height:100%;border-radius:0}}"
  ].join("\n");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  var style = el("style"); style.textContent = css; document.head.appendChild(style);
  var launcher = el("button", "hw-launcher", "💬");
  launcher.id = "hw-launcher"; launcher.setAttribute("aria-label", "Open chat");
  var panel = el("div", "hw-panel"); panel.id = "hw-panel";
  panel.setAttribute("role", "dialog"); panel.setAttribute("aria-label", opts.title || "Chat");
  var head = el("div", "hw-head");
  head.appendChild(el("strong", null, opts.title || "Chat with us"));
  var close = el("button", null, "×"); close.setAttribute("aria-label", "Close chat");
  head.appendChild(close);
  var status = el("div", "hw-status"); status.id = "hw-status";
  var list = el("div", "hw-messages"); list.id = "hw-messages"; list.setAttribute("aria-live", "polite");
  var typing = el("div", "hw-typing", "Typing…"); typing.id = "hw-typing";
  var note = el("div", "hw-note"); note.id = "hw-note";
  var form = el("form", "hw-form");
  var input = el("textarea"); input.id = "hw-input"; input.maxLength = MAX;
  input.placeholder = "Type your message…"; input.setAttribute("aria-label", "Message");
  var send = el("button", null, "Send"); send.id = "hw-send"; send.type = "submit";
  form.appendChild(input); form.appendChild(send);
  [head, status, list, typing, note, form].forEach(function (c) { panel.appendChild(c); });

  function mount() { document.body.appendChild(launcher); document.body.appendChild(panel); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  var conv = null, ws = null, lastId = 0, seen = {}, pending = [], retry = 0, typingTimer = null, state = "bot";

  function load() { try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { return null; } }
  function save() { localStorage.setItem(KEY, JSON.stringify(conv)); }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function api(path) { return ORIGIN + "/api/conversations" + path; }

  function scroll() { list.scrollTop = list.scrollHeight; }

  function who(m) {
    if (m.role === "agent") return "Assistant";
    if (m.role === "human") return m.author ? String(m.author).split(" ")[0] : "Team";
    return null;
  }

  function render(m) {
    if (m.id && seen[m.id]) return;
    if (m.id) { seen[m.id] = true; lastId = Math.max(lastId, m.id); }
    if (m.role === "shopper") {
      // The server echoes the shopper's own message (with our client_id): it replaces the pending bubble.
      for (var i = 0; i < pending.length; i++) {
        if ((m.client_id && pending[i].clientId === m.client_id) || (!m.client_id && pending[i].text === m.text)) {
          pending[i].node.remove(); pending.splice(i, 1); break;
        }
      }
      // Everything that was waiting has gone: the "trying again" note has nothing left to say.
      if (!pending.length && note.classList.contains("hw-calm")) showNote("");
    }
    if (m.role === "agent" || m.role === "human") hideTyping();
    var node = el("div", "hw-msg");
    node.setAttribute("data-role", m.role);
    if (m.id) node.setAttribute("data-id", String(m.id));
    var label = who(m);
    if (label) node.appendChild(el("span", "hw-who", label));
    node.appendChild(document.createTextNode(m.text));
    if (m.sources && m.sources.length) node.appendChild(el("span", "hw-src", "Source: " + m.sources.join(", ")));
    list.appendChild(node);
    scroll();
  }

  function setState(s) {
    state = s;
    var text = { queued: "Handed to a person — they'll reply here.", claimed: "You're chatting with our team.",
                 resolved: "Resolved — write again to start a new chat." }[s] || "";
    status.textContent = text;
    status.className = "hw-status" + (text ? " hw-show" : "");
    if (s === "resolved") askRating();
  }

  function askRating() {
    if (!conv || list.querySelector(".hw-rate")) return;
    var box = el("div", "hw-rate");
    [["👍", 1], ["👎", -1]].forEach(function (r) {
      var b = el("button", null, r[0]); b.setAttribute("aria-label", r[1] > 0 ? "Helpful" : "Not helpful");
      b.addEventListener("click", function () {
        fetch(api("/" + conv.id + "/rating?token=" + encodeURIComponent(conv.token)), {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ score: r[1] })
        }).finally(function () { box.replaceChildren(el("span", null, "Thanks for your feedback!")); });
      });
      box.appendChild(b);
    });
    list.appendChild(box); scroll();
  }

  function showTyping() {
    typing.className = "hw-typing hw-show";
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, 15000);
  }
  function hideTyping() { typing.className = "hw-typing"; clearTimeout(typingTimer); }

  function showNote(text, calm) {
    note.textContent = text || "";
    note.className = "hw-note" + (text ? " hw-show" : "") + (calm ? " hw-calm" : "");
  }

  // The service asked us to slow down: say so without alarm, and try again by ourselves.
  function busy(seconds, what) {
    var s = Math.max(1, Math.min(300, Math.ceil(Number(seconds) || 5)));
    showNote(what + " Trying again in " + s + " second" + (s === 1 ? "" : "s") + "…", true);
    return s * 1000;
  }
  function Busy(seconds) { this.retryAfter = seconds; }
  function retryAfterOf(r, d) { return (d && d.retry_after) || Number(r.headers.get("Retry-After")) || 5; }

  function start() {
    var c = load();
    if (c && c.id && c.token) { conv = c; return Promise.resolve(conv); }
    return fetch(api(""), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: opts.email || null, user_hash: opts.userHash || null, name: opts.name || null })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (r.status === 429) throw new Busy(retryAfterOf(r, d));
        if (!r.ok || !d.conversation_id) throw new Error(d.error || "not started");
        return d;
      });
    }).then(function (d) {
      conv = { id: d.conversation_id, token: d.token }; save(); return conv;
    });
  }

  // One page after the last message we have; again while the service says there is more.
  function history() {
    return fetch(api("/" + conv.id + "/messages?token=" + encodeURIComponent(conv.token) + "&after=" + lastId))
      .then(function (r) {
        if (r.status === 403 || r.status === 404) { localStorage.removeItem(KEY); conv = null; throw new Error("reset"); }
        return r.json();
      })
      .then(function (d) {
        var before = lastId;
        d.messages.forEach(render); setState(d.state);
        if (d.more && lastId > before) return history();
      });
  }

  function connect() {
    var url = ORIGIN.replace(/^http/, "ws") + "/api/conversations/" + conv.id + "/ws?token=" + encodeURIComponent(conv.token);
    ws = new WebSocket(url);
    ws.onopen = function () {
      retry = 0;
      // Anything sent over a socket that died before the server confirmed it goes again, with the
      // same client_id, so the server keeps it once whatever happened to the first try.
      pending.forEach(function (p) { ws.send(JSON.stringify({ type: "message", text: p.text, client_id: p.clientId })); });
    };
    ws.onmessage = function (ev) {
      var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "message") render(f);
      else if (f.type === "state") setState(f.state);
      else if (f.type === "typing") showTyping();
      else if (f.type === "sync") history().catch(function () {});
      else if (f.type === "error" && f.retry_after) {
        var p = pendingById(f.client_id);
        var delay = busy(f.retry_after, "You're sending messages quickly.");
        if (p) setTimeout(function () { deliver(p); }, delay);
      }
      else if (f.type === "error") showNote(f.error);
    };
    ws.onclose = function () {
      ws = null;
      var delay = Math.min(30000, 500 * Math.pow(2, retry++));
      setTimeout(function () { boot(); }, delay);
    };
  }

  var booting = false, bootFailures = 0;
  function boot() {
    if (booting) return;
    booting = true;
    start().then(history).then(function () { bootFailures = 0; connect(); }).catch(function (e) {
      booting = false;
      if (e && e.message === "reset") return boot();
      var delay = e instanceof Busy ? busy(e.retryAfter, "Lots of people are chatting right now.")
        : Math.min(60000, 3000 * Math.pow(2, bootFailures++));
      setTimeout(function () { if (!booting) { if (e instanceof Busy) showNote(""); boot(); } }, delay);
    }).finally(function () { booting = false; });
  }

  function pendingById(clientId) {
    for (var i = 0; i < pending.length; i++) if (pending[i].clientId === clientId) return pending[i];
    return null;
  }

  // Send one pending message: on the socket when it is open, else over HTTP; a 429 waits the
  // time the service gave and sends it again (same client_id: it is stored once either way).
  function deliver(p) {
    if (pending.indexOf(p) < 0) return;
    if (ws && ws.readyState === 1) {
      ws.send(JSON.stringify({ type: "message", text: p.text, client_id: p.clientId }));
      return;
    }
    start().then(function () {
      return fetch(api("/" + conv.id + "/messages?token=" + encodeURIComponent(conv.token)), {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: p.text, client_id: p.clientId })
      });
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) {
        if (r.status === 429) {
          var delay = busy(retryAfterOf(r, d), "You're sending messages quickly.");
          setTimeout(function () { deliver(p); }, delay);
        } else if (d.error) showNote(d.error);
        else if (d.message) { showNote(""); render(d.message); }
      });
    }).catch(function (e) {
      if (e instanceof Busy) {
        var delay = busy(e.retryAfter, "Lots of people are chatting right now.");
        setTimeout(function () { deliver(p); }, delay);
      } else showNote("Not sent: check your connection and try again.");
    });
  }

  function submit(text) {
    text = (text || "").trim();
    if (!text) return;
    if (text.length > MAX) { showNote("Messages are limited to " + MAX + " characters."); return; }
    showNote("");
    var clientId = uuid();
    var node = el("div", "hw-msg hw-pending"); node.setAttribute("data-role", "shopper");
    node.appendChild(document.createTextNode(text));
    list.appendChild(node); scroll();
    var p = { text: text, node: node, clientId: clientId };
    pending.push(p);
    if (state === "resolved") setState("bot");
    deliver(p);
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); submit(input.value); input.value = ""; });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(input.value); input.value = ""; }
  });
  input.addEventListener("input", function () {
    showNote(input.value.length >= MAX ? "You've reached the " + MAX + "-character limit." : "");
  });

  var opened = false;
  function open() {
    panel.classList.add("hw-open"); launcher.setAttribute("aria-expanded", "true");
    if (!opened) { opened = true; boot(); }
    setTimeout(function () { input.focus(); }, 0);
  }
  function closePanel() { panel.classList.remove("hw-open"); launcher.setAttribute("aria-expanded", "false"); }
  launcher.addEventListener("click", function () { panel.classList.contains("hw-open") ? closePanel() : open(); });
  close.addEventListener("click", closePanel);

  window.HandoffWidget = {
    open: open,
    close: closePanel,
    reset: function () {
      localStorage.removeItem(KEY); conv = null; lastId = 0; seen = {}; pending = [];
      list.replaceChildren(); if (ws) ws.close();
    }
  };
  if (opts.open === "true" || load()) { if (document.body) open(); else document.addEventListener("DOMContentLoaded", open); }
})();
