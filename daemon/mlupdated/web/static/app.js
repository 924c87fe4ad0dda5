// mlupdated web: keyboard corrections and live updates. Served from the package;
// the page's Content-Security-Policy allows no other script.
(function () {
  "use strict";
  var POLL_MS = 2500;
  var body = document.body;
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card[data-photo]"));
  var selected = -1;

  function select(index) {
    if (!cards.length) return;
    index = Math.max(0, Math.min(cards.length - 1, index));
    if (selected >= 0 && cards[selected]) cards[selected].classList.remove("selected");
    selected = index;
    cards[selected].classList.add("selected");
    try { sessionStorage.setItem("mlupdated-selected", cards[selected].id); } catch (e) { /* private mode */ }
  }

  function initialSelection() {
    var wanted = location.hash ? location.hash.slice(1) : null;
    if (!wanted) {
      try { wanted = sessionStorage.getItem("mlupdated-selected"); } catch (e) { wanted = null; }
    }
    for (var i = 0; i < cards.length; i++) {
      if (cards[i].id === wanted) { select(i); return; }
    }
    select(0);
  }

  function busy() {
    var active = document.activeElement;
    return active && (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA");
  }

  var submitting = false;
  function press(key) {
    if (selected < 0 || submitting) return false;
    var button = cards[selected].querySelector('button[data-key="' + key + '"]');
    if (!button) return false;
    submitting = true;
    button.form.requestSubmit ? button.form.requestSubmit(button) : button.form.submit();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || busy()) return;
    var key = event.key;
    if (key === "ArrowRight" || key === "j") { select(selected + 1); event.preventDefault(); return; }
    if (key === "ArrowLeft" || key === "k") { select(selected - 1); event.preventDefault(); return; }
    if (key.length === 1 && press(key.toLowerCase())) event.preventDefault();
  });

  cards.forEach(function (card, index) {
    card.addEventListener("click", function () { select(index); });
    card.addEventListener("focus", function () { select(index); });
  });
  document.addEventListener("submit", function () { submitting = true; });

  // Live: poll a small JSON state; reload when what the page shows has changed.
  var stamp = body.getAttribute("data-stamp");
  function poll() {
    if (submitting || document.hidden) { setTimeout(poll, POLL_MS); return; }
    fetch("/api/state", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (state && stamp && state.stamp !== stamp && !submitting) {
          location.reload();
          return;
        }
        setTimeout(poll, POLL_MS);
      })
      .catch(function () { setTimeout(poll, POLL_MS * 2); });
  }

  if (cards.length) initialSelection();
  if (stamp) setTimeout(poll, POLL_MS);
})();
