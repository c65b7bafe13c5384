// PLM Portal: the little JavaScript the pages need besides htmx.
(function () {
  "use strict";

  // Copy buttons: <button data-copy-target="#id">Copy</button>
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      source.select();
      document.execCommand("copy");
      done();
    }
  });

  // Secrets in read-only inputs are selected on focus, ready to copy.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) {
      event.target.select();
    }
  });

  // The navigation's portal badge: filled once the page has loaded (it costs the page no
  // query; see apps/portal/context_processors.py).
  var fillPortalBadge = function () {
    var slot = document.querySelector("[data-nav-portal-slot]");
    if (!slot || !window.htmx) return;
    window.htmx.ajax("GET", slot.getAttribute("data-nav-portal-slot"), { target: slot, swap: "outerHTML" });
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fillPortalBadge);
  } else {
    fillPortalBadge();
  }

  // Close the user menu when clicking elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
})();
