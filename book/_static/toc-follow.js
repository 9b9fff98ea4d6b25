// "On this page" follows the reader after any scroll. The theme marks the entry whose heading
// passes through a band at the top of the window; a jump (Page Down, a dragged scrollbar) can
// carry a heading past the band unseen and leave an earlier entry marked. Once a scroll settles,
// this marks the last section whose heading lies above 30 % of the window, as the theme would,
// and at the very end of the page the last section in view.
(function () {
  "use strict";

  function follow() {
    const nav = document.querySelector("#pst-page-toc-nav");
    if (!nav) return;
    const links = Array.from(nav.querySelectorAll("a[href^='#']"));
    let current = null;
    for (const link of links) {
      const section = document.getElementById(decodeURIComponent(link.hash.slice(1)));
      if (!section) continue;
      const heading = section.querySelector("h1, h2, h3, h4, h5, h6") || section;
      if (heading.getBoundingClientRect().top < window.innerHeight * 0.3) current = link;
    }
    const bottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2;
    if (bottom) {  // the last sections can never reach the band: at the end, take the last one in view
      for (const link of links) {
        const section = document.getElementById(decodeURIComponent(link.hash.slice(1)));
        const heading = section && (section.querySelector("h1, h2, h3, h4, h5, h6") || section);
        if (heading && heading.getBoundingClientRect().top < window.innerHeight) current = link;
      }
    }
    for (const link of links) {
      link.classList.toggle("active", link === current);
      if (link === current) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
    for (const entry of nav.querySelectorAll(".toc-entry")) {
      entry.classList.toggle("active", current !== null && entry.contains(current));
    }
  }

  let timer = null;
  window.addEventListener("scroll", function () {
    clearTimeout(timer);
    timer = setTimeout(follow, 120);
  }, { passive: true });
  window.addEventListener("load", follow);
})();
