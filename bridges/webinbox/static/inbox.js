// The web inbox: queue, one conversation's history and context, reply box, commands, live updates.
// Everything the page shows goes in with textContent (never innerHTML), so nothing a shopper typed
// can run here. The token and the person's name live in localStorage ("handoff.inbox").
(function () {
  "use strict";
  var KEY = "handoff.inbox";
  var auth = load();
  var filter = "open", current = null, tags = [], ws = null, retry = 0;
  var $ = function (id) { return document.getElementById(id); };

  function load() { try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { return null; } }
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined && text !== null) e.textContent = String(text); return e; }

  function api(path, body) {
    var init = { headers: { Authorization: "Bearer " + (auth ? auth.token : "") } };
    if (body) { init.method = "POST"; init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) { showLogin("That token was not accepted."); throw new Error("unauthorized"); }
      return r.json().then(function (d) { if (!r.ok) throw new Error(d.error || ("HTTP " + r.status)); return d; });
    });
  }

  function showLogin(message) {
    $("app").hidden = true; $("login").hidden = false;
    $("login-error").textContent = message || "";
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
  }

  function showApp() {
    $("login").hidden = true; $("app").hidden = false;
    $("me").textContent = auth.name;
    api("/inbox/api/tags").then(function (d) { tags = d.tags; fillTagSelect(); refreshList(); connect(); }).catch(function () {});
  }

  function tagColor(name) { var t = tags.filter(function (x) { return x.name === name; })[0]; return t ? t.color : "#6b7280"; }
  function tagChip(name) { var c = el("span", "tag", name); c.style.background = tagColor(name); c.setAttribute("data-tag", name); return c; }

  function fillTagSelect() {
    var sel = $("tag-select"); sel.replaceChildren();
    tags.forEach(function (t) { var o = el("option", null, (t.emoji ? t.emoji + " " : "") + t.name); o.value = t.name; o.title = t.description; sel.appendChild(o); });
  }

  function age(iso) {
    if (!iso) return "";
    var s = (Date.now() - Date.parse(iso)) / 1000;
    return s < 60 ? Math.round(s) + "s" : s < 3600 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h";
  }

  function refreshList() {
    return api("/inbox/api/conversations?state=" + filter).then(function (d) {
      var q = $("queue"); q.replaceChildren();
      if (!d.conversations.length) q.appendChild(el("p", "empty", "Nothing here."));
      d.conversations.forEach(function (c) {
        var item = el("div", "conv-item" + (current === c.id ? " selected" : ""));
        item.setAttribute("data-id", c.id); item.tabIndex = 0;
        var row = el("div", "row");
        row.appendChild(el("strong", null, "#" + c.id + " " + (c.customer.name || c.customer.username || c.customer.email || "Shopper")));
        row.appendChild(el("span", "badge", c.state + (c.owner ? " · " + c.owner : "")));
        item.appendChild(row);
        var chips = el("div", "tags");
        c.tags.forEach(function (t) { chips.appendChild(tagChip(t)); });
        if (c.priority > 0) chips.appendChild(el("span", "badge prio", "P" + c.priority));
        if (c.blocked) chips.appendChild(el("span", "badge blocked", "shopper blocked the bot"));
        chips.appendChild(el("span", "badge", c.channel + " · " + age(c.handed_off_at || c.created_at)));
        item.appendChild(chips);
        item.appendChild(el("div", "last", c.last_text || ""));
        item.addEventListener("click", function () { openConversation(c.id); });
        item.addEventListener("keydown", function (e) { if (e.key === "Enter") openConversation(c.id); });
        q.appendChild(item);
      });
    }).catch(function () {});
  }

  function contextList(value) {
    if (value === null || typeof value !== "object") return el("span", null, value === null ? "—" : value);
    var dl = el("dl", "ctx");
    Object.keys(value).forEach(function (k) {
      if (value[k] === null || value[k] === undefined || (Array.isArray(value[k]) && !value[k].length)) return;
      dl.appendChild(el("dt", null, Array.isArray(value) ? "#" + (Number(k) + 1) : k));
      var dd = el("dd"); dd.appendChild(contextList(value[k])); dl.appendChild(dd);
    });
    return dl;
  }

  function renderDetail(d) {
    var c = d.conversation;
    $("detail").hidden = false; $("app").classList.add("show-detail");
    $("detail-title").textContent = "#" + c.id + " · " + (c.customer.name || c.customer.username || "Shopper") +
      (c.customer.email ? " <" + c.customer.email + ">" : "") + (c.customer.tier ? " · " + c.customer.tier : "") + " · " + c.channel;
    $("detail-state").textContent = c.state;
    $("detail-owner").textContent = c.owner ? "owned by " + c.owner : "";
    var t = $("detail-tags"); t.replaceChildren();
    c.tags.forEach(function (name) {
      var chip = tagChip(name);
      var x = el("button", "tag-remove", "×"); x.title = "Remove tag " + name; x.style.cssText = "background:none;border:0;color:#fff;padding:0 0 0 4px";
      x.addEventListener("click", function () { command("tag", ["-" + name]); });
      chip.appendChild(x); t.appendChild(chip);
    });
    $("detail-reason").textContent = c.reason || "";
    $("detail-summary").textContent = c.summary || "";
    var ctx = $("detail-context"); ctx.replaceChildren(contextList(c.context || {}));
    $("detail-context-box").hidden = !c.context || !Object.keys(c.context).length;
    $("btn-claim").disabled = c.state === "claimed" && c.owner === auth.name;
    $("btn-release").disabled = c.state !== "claimed";
    $("btn-resolve").disabled = c.state === "resolved";
    $("btn-bot").disabled = c.state === "bot";
    var m = $("detail-messages"); m.replaceChildren();
    d.messages.forEach(function (msg) {
      var node = el("div", "msg"); node.setAttribute("data-role", msg.role); node.setAttribute("data-id", msg.id);
      var label = { shopper: "Shopper", agent: "Assistant", human: msg.author || "Team", system: null, note: "Internal note · " + (msg.author || "") }[msg.role];
      if (label) node.appendChild(el("span", "who", label));
      node.appendChild(document.createTextNode(msg.text));
      if (msg.sources && msg.sources.length) node.appendChild(el("span", "who", "Source: " + msg.sources.join(", ")));
      m.appendChild(node);
    });
    m.scrollTop = m.scrollHeight;
  }

  function openConversation(id) {
    current = id; $("detail-error").textContent = "";
    document.querySelectorAll(".conv-item").forEach(function (n) { n.classList.toggle("selected", Number(n.getAttribute("data-id")) === id); });
    return api("/inbox/api/conversations/" + id).then(renderDetail).catch(function (e) { $("detail-error").textContent = e.message; });
  }

  function command(name, args) {
    if (!current) return;
    $("detail-error").textContent = "";
    api("/inbox/api/conversations/" + current + "/command", { command: name, args: args || [], author: auth.name })
      .then(function () { return Promise.all([openConversation(current), refreshList()]); })
      .catch(function (e) { $("detail-error").textContent = e.message; });
  }

  function connect() {
    var url = location.origin.replace(/^http/, "ws") + "/inbox/ws?token=" + encodeURIComponent(auth.token);
    ws = new WebSocket(url);
    ws.onopen = function () { retry = 0; };
    ws.onmessage = function (ev) {
      var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "changed") { refreshList(); if (f.conversation_id === current) openConversation(current); }
      if (f.type === "alert") { var a = el("div", null, f.text); $("alerts").prepend(a); }
    };
    ws.onclose = function () { ws = null; if (auth) setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retry++))); };
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    auth = { token: $("login-token").value.trim(), name: $("login-name").value.trim() };
    localStorage.setItem(KEY, JSON.stringify(auth));
    showApp();
  });
  $("logout").addEventListener("click", function (e) { e.preventDefault(); localStorage.removeItem(KEY); auth = null; showLogin(); });
  $("filters").addEventListener("click", function (e) {
    var b = e.target.closest("button"); if (!b) return;
    filter = b.getAttribute("data-state");
    document.querySelectorAll("#filters button").forEach(function (x) { x.classList.toggle("active", x === b); });
    refreshList();
  });
  $("btn-claim").addEventListener("click", function () { command("claim"); });
  $("btn-release").addEventListener("click", function () { command("release"); });
  $("btn-resolve").addEventListener("click", function () { command("resolve"); });
  $("btn-bot").addEventListener("click", function () { command("bot"); });
  $("tag-add").addEventListener("click", function () { command("tag", ["+" + $("tag-select").value]); });
  $("back").addEventListener("click", function () { $("app").classList.remove("show-detail"); current = null; });
  $("reply-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text || !current) return;
    api("/inbox/api/conversations/" + current + "/reply", { text: text, author: auth.name })
      .then(function () { $("reply-text").value = ""; return openConversation(current); })
      .catch(function (err) { $("detail-error").textContent = err.message; });
  });
  $("reply-text").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("reply-form").requestSubmit();
  });
  var params = new URLSearchParams(location.search);
  if (auth && auth.token) { showApp(); if (params.get("c")) openConversation(Number(params.get("c"))); } else showLogin();
})();
