// The web inbox: paged lists with counts, one conversation's history and context, reply box,
// commands, live updates, and (for the admin) the team's accounts.
// Everything the page shows goes in with textContent (never innerHTML), so nothing a shopper typed
// can run here. Nobody's token is kept by the page: signing in trades a one-time token for an
// HttpOnly session cookie, which also authenticates the live socket.
(function () {
  "use strict";
  var PAGE = 50;
  var QUEUE_TABS = { open: true, waiting: true, mine: true };
  var me = null, tab = "open", offset = 0, total = 0, rows = [], current = null, tags = [];
  var ws = null, retry = 0, pending = {}, flushTimer = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined && text !== null) e.textContent = String(text); return e; }

  function request(path, body) {
    var init = { credentials: "same-origin", headers: {} };
    if (body) { init.method = "POST"; init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (d) { return { status: r.status, ok: r.ok, data: d, retryAfter: r.headers.get("Retry-After") }; });
    });
  }

  function api(path, body) {
    return request(path, body).then(function (r) {
      if (r.status === 401) { showLogin("Your session has ended: sign in again."); throw new Error("signed out"); }
      if (!r.ok) throw new Error(r.data.error || ("HTTP " + r.status));
      return r.data;
    });
  }

  // ------------------------------------------------------------------ signing in

  function signIn(token) {
    $("login-error").textContent = "";
    return request("/inbox/api/login", { token: token }).then(function (r) {
      if (r.ok) { showApp(r.data); return; }
      showLogin(r.status === 429 ? "Too many attempts: try again in " + (r.retryAfter || "a few") + " seconds."
        : (r.data.error || "That sign-in link or token was not accepted."));
    }).catch(function () { showLogin("Could not reach the service: check your connection."); });
  }

  function showLogin(message) {
    me = null;
    $("app").hidden = true; $("login").hidden = false;
    $("login-error").textContent = message || "";
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
  }

  function showApp(person) {
    me = person;
    $("login").hidden = true; $("app").hidden = false;
    $("login-token").value = "";
    $("me").textContent = person.name + (person.admin ? " (admin)" : "");
    $("team-link").hidden = $("team-sep").hidden = !person.admin;
    api("/inbox/api/tags").then(function (d) { tags = d.tags; fillTagSelect(); }).catch(function () {});
    loadPage();
    connect();
    var c = Number(new URLSearchParams(location.search).get("c"));
    if (c) openConversation(c);
  }

  // ------------------------------------------------------------------ the list

  function tagColor(name) { var t = tags.filter(function (x) { return x.name === name; })[0]; return t ? t.color : "#6b7280"; }
  function tagChip(name) { var c = el("span", "tag", name); c.style.background = tagColor(name); c.setAttribute("data-tag", name); return c; }

  function fillTagSelect() {
    var sel = $("tag-select"); sel.replaceChildren();
    tags.forEach(function (t) { var o = el("option", null, (t.emoji ? t.emoji + " " : "") + t.name); o.value = t.name; o.title = t.description; sel.appendChild(o); });
  }

  function age(iso) {
    if (!iso) return "";
    var s = (Date.now() - Date.parse(iso)) / 1000;
    return s < 60 ? Math.round(s) + "s" : s < 3600 ? Math.round(s / 60) + "m" : s < 172800 ? Math.round(s / 3600) + "h" : Math.round(s / 86400) + "d";
  }

  function who(c) {
    var cu = c.customer;
    if (cu.name || cu.username) return cu.name || cu.username;
    if (cu.email) return cu.email;
    if (cu.claimed_email) return cu.claimed_email + " (not verified)";
    return "Shopper";
  }

  // The same order as the server's: the queue tabs by priority then waiting time, the others newest first.
  function before(a, b) {
    if (QUEUE_TABS[tab]) {
      if (a.priority !== b.priority) return a.priority > b.priority;
      var ta = a.handed_off_at ? Date.parse(a.handed_off_at) : Infinity, tb = b.handed_off_at ? Date.parse(b.handed_off_at) : Infinity;
      if (ta !== tb) return ta < tb;
      return a.id < b.id;
    }
    return a.id > b.id;
  }

  function setCounts(counts) {
    if (!counts) return;
    document.querySelectorAll("#filters .count").forEach(function (n) {
      var v = counts[n.getAttribute("data-count")];
      n.textContent = v === undefined ? "" : String(v);
    });
    total = counts[tab] || 0;
  }

  function renderList() {
    var q = $("queue"); q.replaceChildren();
    if (!rows.length) q.appendChild(el("p", "empty", "Nothing here."));
    rows.forEach(function (c) {
      var item = el("div", "conv-item" + (current === c.id ? " selected" : ""));
      item.setAttribute("data-id", c.id); item.tabIndex = 0;
      var row = el("div", "row");
      row.appendChild(el("strong", null, "#" + c.id + " " + who(c)));
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
    var first = rows.length ? offset + 1 : 0;
    $("page-info").textContent = first + "–" + (offset + rows.length) + " of " + total;
    $("page-prev").disabled = offset === 0;
    $("page-next").disabled = offset + rows.length >= total;
  }

  function loadPage() {
    return api("/inbox/api/conversations?state=" + encodeURIComponent(tab) + "&offset=" + offset + "&limit=" + PAGE).then(function (d) {
      rows = d.conversations; setCounts(d.counts);
      if (!rows.length && offset > 0) { offset = Math.max(0, offset - PAGE); return loadPage(); }
      renderList();
    }).catch(function () {});
  }

  // A live event names conversations that changed: fetch just those and patch the page.
  function patch(changed, counts) {
    changed.forEach(function (c) {
      var at = -1;
      rows.forEach(function (r, i) { if (r.id === c.id) at = i; });
      var belongs = c.tabs.indexOf(tab) >= 0;
      if (at >= 0) rows.splice(at, 1);
      if (!belongs) return;
      if (at < 0 && offset > 0) return;  // new to this list: it shows on the first page
      var i = 0;
      while (i < rows.length && before(rows[i], c)) i++;
      if (at >= 0 || i < PAGE) rows.splice(i, 0, c);
    });
    if (rows.length > PAGE) rows.length = PAGE;
    setCounts(counts);
    renderList();
  }

  function flush() {
    flushTimer = null;
    var ids = Object.keys(pending); pending = {};
    if (!ids.length || !me) return;
    if (ids.length > PAGE) { loadPage(); return; }
    api("/inbox/api/conversations?ids=" + ids.join(",")).then(function (d) { patch(d.conversations, d.counts); }).catch(function () {});
    if (current && ids.indexOf(String(current)) >= 0) openConversation(current, true);
  }

  function changed(id) {
    pending[id] = true;
    if (!flushTimer) flushTimer = setTimeout(flush, 250);
  }

  // ------------------------------------------------------------------ one conversation

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
    var c = d.conversation, cu = c.customer;
    $("detail").hidden = false; $("app").classList.add("show-detail");
    var title = $("detail-title"); title.replaceChildren();
    title.appendChild(document.createTextNode("#" + c.id + " · " + (cu.name || cu.username || "Shopper")));
    if (cu.email) title.appendChild(document.createTextNode(" <" + cu.email + ">"));
    else if (cu.claimed_email) {
      title.appendChild(document.createTextNode(" <" + cu.claimed_email + "> "));
      title.appendChild(el("span", "unverified", "(not verified)"));
    }
    title.appendChild(document.createTextNode((cu.tier ? " · " + cu.tier : "") + " · " + c.channel));
    var owner = cu.order_owner;
    $("detail-order-owner").hidden = !owner;
    $("detail-order-owner").textContent = owner ? "Order owner (not verified): " +
      [owner.email, owner.tier ? owner.tier + " tier" : null].filter(Boolean).join(" · ") : "";
    $("detail-state").textContent = c.state;
    $("detail-owner").textContent = c.owner ? "owned by " + c.owner : "";
    var t = $("detail-tags"); t.replaceChildren();
    c.tags.forEach(function (name) {
      var chip = tagChip(name);
      var x = el("button", "tag-remove", "×"); x.type = "button"; x.title = "Remove tag " + name;
      x.addEventListener("click", function () { command("tag", ["-" + name]); });
      chip.appendChild(x); t.appendChild(chip);
    });
    $("detail-reason").textContent = c.reason || "";
    $("detail-summary").textContent = c.summary || "";
    var ctx = $("detail-context"); ctx.replaceChildren(contextList(c.context || {}));
    $("detail-context-box").hidden = !c.context || !Object.keys(c.context).length;
    $("btn-claim").disabled = c.state === "claimed" && me && c.owner === me.name;
    $("btn-release").disabled = c.state !== "claimed";
    $("btn-resolve").disabled = c.state === "resolved";
    $("btn-bot").disabled = c.state === "bot";
    $("btn-wrong").disabled = !c.handed_off_at;
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

  function openConversation(id, quiet) {
    if (current !== id) $("detail-notice").textContent = "";
    current = id; if (!quiet) $("detail-error").textContent = "";
    document.querySelectorAll(".conv-item").forEach(function (n) { n.classList.toggle("selected", Number(n.getAttribute("data-id")) === id); });
    return api("/inbox/api/conversations/" + id).then(function (d) { if (current === id) renderDetail(d); })
      .catch(function (e) { $("detail-error").textContent = e.message; });
  }

  function command(name, args) {
    if (!current) return;
    $("detail-error").textContent = "";
    var id = current;
    api("/inbox/api/conversations/" + id + "/command", { command: name, args: args || [] })
      .then(function () { changed(id); return openConversation(id, true); })
      .catch(function (e) { $("detail-error").textContent = e.message; });
  }

  // "Wrong handoff": the shopper's message becomes an example for review (handoff examples list);
  // the answer says what was recorded, as nothing else on the page changes.
  function markWrong() {
    if (!current) return;
    var note = window.prompt("Mark this as a handoff that should not have happened? The shopper's message is kept " +
      "as an example for review. A note for the reviewer (optional):", "");
    if (note === null) return;
    var id = current;
    $("detail-error").textContent = ""; $("detail-notice").textContent = "";
    api("/inbox/api/conversations/" + id + "/command", { command: "wrong", args: note.trim() ? [note.trim()] : [] })
      .then(function (d) { $("detail-notice").textContent = d.text; })
      .catch(function (e) { $("detail-error").textContent = e.message; });
  }

  // ------------------------------------------------------------------ live

  function connect() {
    ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/inbox/ws");
    ws.onopen = function () { if (retry) loadPage(); retry = 0; };
    ws.onmessage = function (ev) {
      var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "changed") changed(f.conversation_id);
      if (f.type === "alert") { var a = el("div", null, f.text); $("alerts").prepend(a); }
    };
    ws.onclose = function (ev) {
      ws = null;
      if (!me) return;
      if (ev.code === 4401) { showLogin("Your session has ended: sign in again."); return; }
      setTimeout(function () { if (me) connect(); }, Math.min(30000, 500 * Math.pow(2, retry++)));
    };
  }

  // ------------------------------------------------------------------ the team (admin)

  function loadTeam() {
    $("team-error").textContent = "";
    return api("/inbox/api/staff").then(function (d) {
      var body = $("staff-rows"); body.replaceChildren();
      d.staff.forEach(function (p) {
        var tr = el("tr"); tr.setAttribute("data-name", p.name);
        tr.appendChild(el("td", null, p.name + (p.admin ? " (admin)" : "")));
        tr.appendChild(el("td", null, p.sessions + (p.login_pending ? " · link not used yet" : "")));
        var td = el("td");
        if (!me || p.name !== me.name) {
          var b = el("button", "remove", "Remove"); b.type = "button";
          b.addEventListener("click", function () {
            if (!window.confirm("Remove " + p.name + "? They are signed out at once.")) return;
            api("/inbox/api/staff/remove", { name: p.name }).then(loadTeam).catch(function (e) { $("team-error").textContent = e.message; });
          });
          td.appendChild(b);
        }
        tr.appendChild(td); body.appendChild(tr);
      });
    }).catch(function (e) { $("team-error").textContent = e.message; });
  }

  // ------------------------------------------------------------------ wiring

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var token = $("login-token").value.trim();
    if (token) signIn(token);
  });
  $("logout").addEventListener("click", function (e) {
    e.preventDefault();
    request("/inbox/api/logout", {}).then(function () { showLogin("Signed out."); }, function () { showLogin(); });
  });
  $("filters").addEventListener("click", function (e) {
    var b = e.target.closest("button"); if (!b) return;
    tab = b.getAttribute("data-state"); offset = 0;
    document.querySelectorAll("#filters button").forEach(function (x) { x.classList.toggle("active", x === b); });
    loadPage();
  });
  $("page-prev").addEventListener("click", function () { offset = Math.max(0, offset - PAGE); loadPage(); });
  $("page-next").addEventListener("click", function () { offset += PAGE; loadPage(); });
  $("team-link").addEventListener("click", function (e) { e.preventDefault(); $("team").hidden = false; loadTeam(); });
  $("team-close").addEventListener("click", function () { $("team").hidden = true; $("staff-invite").hidden = true; });
  $("staff-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var name = $("staff-name").value.trim(); if (!name) return;
    api("/inbox/api/staff", { name: name }).then(function (d) {
      $("staff-name").value = "";
      $("staff-invite").hidden = false;
      $("staff-invite-text").textContent = "Send this link to " + d.name + ": it signs them in once, until " + new Date(d.expires_at).toLocaleString() + ".";
      $("staff-link").value = location.origin + "/inbox#login=" + d.token;
      $("staff-link").select();
      return loadTeam();
    }).catch(function (err) { $("team-error").textContent = err.message; });
  });
  $("btn-claim").addEventListener("click", function () { command("claim"); });
  $("btn-release").addEventListener("click", function () { command("release"); });
  $("btn-resolve").addEventListener("click", function () { command("resolve"); });
  $("btn-bot").addEventListener("click", function () { command("bot"); });
  $("btn-wrong").addEventListener("click", markWrong);
  $("tag-add").addEventListener("click", function () { command("tag", ["+" + $("tag-select").value]); });
  $("back").addEventListener("click", function () { $("app").classList.remove("show-detail"); current = null; });
  $("reply-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("reply-text").value.trim();
    if (!text || !current) return;
    var id = current;
    api("/inbox/api/conversations/" + id + "/reply", { text: text })
      .then(function () { $("reply-text").value = ""; changed(id); return openConversation(id, true); })
      .catch(function (err) { $("detail-error").textContent = err.message; });
  });
  $("reply-text").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("reply-form").requestSubmit();
  });

  // A sign-in link carries its token in the fragment (never sent to a server); take it out of the
  // address bar and history before anything else happens.
  var m = /(?:^#|&)login=([^&]+)/.exec(location.hash);
  if (m) {
    history.replaceState(null, "", location.pathname + location.search);
    signIn(decodeURIComponent(m[1]));
  } else {
    request("/inbox/api/me").then(function (r) { if (r.ok) showApp(r.data); else showLogin(); }, function () { showLogin(); });
  }
})();
