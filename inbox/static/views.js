// The ticket list keeps itself up to date (inbox/web/views.py). Every few seconds it asks the
// server whether a ticket the user may see changed; only then does it fetch the rows again and
// put them in place. Focus never moves; a polite live region says what is new. Without this
// script the list is a plain page that shows what was there when it was loaded.
(function () {
  "use strict";
  var INTERVAL = 4000;
  var results = document.getElementById("views-results");
  var live = document.getElementById("views-live");
  if (!results || !live || !window.fetch) {
    return;
  }
  var marker = results.dataset.marker || "";
  var firstPage = results.dataset.firstPage === "yes";
  var busy = false;
  var stopped = false;

  function references(root) {
    var found = {};
    root.querySelectorAll("tr[data-reference]").forEach(function (row) {
      found[row.dataset.reference] = true;
    });
    return found;
  }

  function announce(text) {
    // Emptied first, so the same words said twice are read out twice.
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 100);
  }

  function updateCounts(counts) {
    if (!counts) {
      return;
    }
    document.querySelectorAll(".views-count[data-view]").forEach(function (badge) {
      var value = counts[badge.dataset.view];
      if (value !== undefined && badge.textContent !== String(value)) {
        badge.textContent = String(value);
      }
    });
  }

  function swapRows(html) {
    var before = references(results);
    var template = document.createElement("template");
    template.innerHTML = html;
    var fresh = [];
    template.content.querySelectorAll("tr[data-reference]").forEach(function (row) {
      if (!before[row.dataset.reference]) {
        fresh.push(row);
        row.classList.add("views-fresh");
      }
    });
    if (results.innerHTML.trim() === html.trim()) {
      return;
    }
    // Where the keyboard was: the same link gets focus back after the swap.
    var active = document.activeElement;
    var focusedHref = active && results.contains(active) ? active.getAttribute("href") : null;
    results.replaceChildren(template.content);
    if (focusedHref) {
      var again = results.querySelector('a[href="' + CSS.escape(focusedHref) + '"]');
      if (again) {
        again.focus({ preventScroll: true });
      }
    }
    if (fresh.length === 1) {
      announce(live.dataset.newOne);
    } else if (fresh.length > 1) {
      announce(live.dataset.newMany.replace("{n}", String(fresh.length)));
    } else {
      announce(live.dataset.updated);
    }
  }

  function get(url, type) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: type } }).then(
      function (response) {
        var kind = response.headers.get("Content-Type") || "";
        // Signed out meanwhile: the answer is the sign-in page; stop asking.
        if (!response.ok || response.redirected || kind.indexOf(type) !== 0) {
          stopped = true;
          throw new Error("no longer signed in");
        }
        return type === "application/json" ? response.json() : response.text();
      }
    );
  }

  function poll() {
    if (busy || stopped || document.hidden) {
      return;
    }
    busy = true;
    var url = results.dataset.changes + "?since=" + encodeURIComponent(marker);
    get(url, "application/json")
      .then(function (answer) {
        if (!answer.changed) {
          return null;
        }
        marker = answer.marker;
        updateCounts(answer.counts);
        if (!firstPage) {
          announce(live.dataset.elsewhere);
          return null;
        }
        return get(results.dataset.rows, "text/html").then(swapRows);
      })
      .catch(function () { /* tried again at the next tick, unless stopped */ })
      .then(function () { busy = false; });
  }

  window.setInterval(poll, INTERVAL);
  document.addEventListener("visibilitychange", poll);
})();
