// A small history router: same-origin links change the page without a reload.
// Each route's render(main, params, signal) draws into <main>; signal aborts when the page
// is left (streams and long polls stop with it).

export class Router {
  constructor(routes, { owns = () => true, notFound, onChange = () => {} } = {}) {
    this.routes = routes.map(([pattern, render]) => [compile(pattern), render]);
    this.owns = owns;
    this.notFound = notFound;
    this.onChange = onChange;
    this.control = null;
  }

  start() {
    document.addEventListener("click", (event) => {
      const link = event.target.closest && event.target.closest("a[href]");
      if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
          || event.shiftKey || link.target || link.hasAttribute("download")) return;
      const url = new URL(link.href, location.href);
      if (url.origin !== location.origin || !this.owns(url.pathname)) return;
      event.preventDefault();
      this.go(url.pathname + url.search);
    });
    window.addEventListener("popstate", () => this.render());
    this.render();
  }

  go(path, { replace = false } = {}) {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    this.render();
    window.scrollTo(0, 0);
  }

  async render() {
    if (this.control) this.control.abort();
    const control = this.control = new AbortController();
    const main = document.getElementById("main");
    const path = location.pathname.replace(/\/+$/, "") || "/";
    const params = new URLSearchParams(location.search);
    this.onChange(path);
    for (const [regex, render] of this.routes) {
      const match = regex.exec(path);
      if (match) {
        await this.draw(main, () => render(main, { ...match.groups, query: params }, control.signal), control);
        return;
      }
    }
    await this.draw(main, () => this.notFound(main), control);
  }

  async draw(main, render, control) {
    try {
      await render();
    } catch (error) {
      if (control.signal.aborted) return;
      main.replaceChildren();
      const message = document.createElement("p");
      message.className = "error";
      message.setAttribute("role", "alert");
      message.textContent = error && error.message ? error.message : String(error);
      main.append(message);
    }
  }
}

function compile(pattern) {
  const source = pattern.replace(/\{(\w+)\}/g, (_, name) => `(?<${name}>[^/]+)`);
  return new RegExp(`^${source}$`);
}

/** Mark the navigation link of the current page (aria-current). */
export function markCurrent(container, path, exact = []) {
  for (const link of container.querySelectorAll("a[href]")) {
    const href = new URL(link.href).pathname;
    const current = exact.includes(href) ? path === href : path === href || path.startsWith(href + "/");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}
