// Runs before the page paints: applies the saved colour theme (no flash) and marks that
// script runs, so script-only controls show and their no-script fallbacks hide.
(function () {
  var root = document.documentElement;
  root.classList.add("js");
  try {
    var saved = localStorage.getItem("bitacora-theme");
    if (saved === "light" || saved === "dark") root.setAttribute("data-theme", saved);
  } catch (e) { /* storage disabled: follow the system */ }
})();
