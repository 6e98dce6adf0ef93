// pds-facade console: checks NHS numbers as they are typed (the mod 11 check digit) and says
// whose record it is. Only an aid: every form works without it and the server checks again.
"use strict";
(function () {
  function valid(digits) {
    if (!/^[0-9]{10}$/.test(digits)) return false;
    var sum = 0;
    for (var i = 0; i < 9; i++) sum += Number(digits[i]) * (10 - i);
    var check = 11 - (sum % 11);
    if (check === 11) check = 0;
    return check !== 10 && check === Number(digits[9]);
  }
  function say(el, text, ok) {
    el.textContent = text;
    el.className = "check " + (ok ? "ok" : "bad");
  }
  document.querySelectorAll("input.nhs").forEach(function (input) {
    var out = document.getElementById(input.id + "-check");
    if (!out) return;
    var timer = null;
    input.addEventListener("input", function () {
      var digits = input.value.replace(/\s+/g, "");
      clearTimeout(timer);
      if (digits.length === 0) { out.textContent = ""; out.className = "check"; return; }
      if (digits.length < 10) { say(out, "An NHS number is 10 digits", false); return; }
      if (!valid(digits)) { say(out, "Not a valid NHS number: the check digit does not match", false); input.setAttribute("aria-invalid", "true"); return; }
      input.removeAttribute("aria-invalid");
      say(out, "Valid NHS number: looking it up…", true);
      timer = setTimeout(function () {
        fetch("/console/lookup?nhs=" + encodeURIComponent(digits), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (j) { say(out, j.text, j.ok); })
          .catch(function () { say(out, "Could not look the number up", false); });
      }, 250);
    });
  });
})();
