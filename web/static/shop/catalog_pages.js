// Storefront pages of the catalog: the listing (category, search), a product, the cart.

import { api, claims, field, fill, h, money, toast, errorText } from "./api.js";
import * as cart from "./cart.js";
import { track } from "./tracking.js";

const PER_PAGE = 24;
const LEVELS = { in_stock: "In stock", low_stock: "Only a few left", out_of_stock: "Out of stock" };

export function availability(level) {
  return h("span", { class: `stock stock-${level || "out_of_stock"}`, "data-stock": level || "" },
    LEVELS[level] || "Availability unknown");
}

function thumb(product) {
  return h("div", { class: "thumb" }, product.image_url
    ? h("img", { src: product.image_url, alt: "", loading: "lazy", onerror: (e) => e.target.remove() })
    : h("span", { "aria-hidden": "true" }, product.category || ""));
}

export function productCard(product) {
  const sold = product.stock_level === "out_of_stock";
  return h("article", { class: "card product-card", "data-sku": product.sku },
    thumb(product),
    h("a", { class: "name", href: `/products/${encodeURIComponent(product.sku)}` }, product.name || product.sku),
    h("span", { class: "price" }, money(product.price_cents)),
    availability(product.stock_level),
    h("button", {
      type: "button", disabled: sold, "aria-label": `Add ${product.name || product.sku} to cart`,
      onclick: () => { cart.add(product); toast(`${product.name} is in your cart`); },
    }, "Add to cart"));
}

/** The category names of the catalog (it has no list of its own: read from the listing). */
export async function categories() {
  const found = new Set();
  for (let page = 1; page <= 5; page += 1) {
    const listing = await api(`/api/products?per_page=100&page=${page}`);
    listing.items.forEach((p) => p.category && found.add(p.category));
    if (page * listing.per_page >= listing.total) break;
  }
  return [...found].sort();
}

export async function listing(main, { query }, signal) {
  const category = query.get("category") || "";
  const q = (query.get("q") || "").trim();
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const params = new URLSearchParams({ page, per_page: PER_PAGE });
  if (category) params.set("category", category);
  if (q) params.set("q", q);
  const result = await api(`/api/products?${params}`, { signal });
  if (q) track("search", { query: q });
  const title = q ? `Results for \u201c${q}\u201d` : category ? category.replace(/-/g, " ") : "All products";
  const pages = Math.max(1, Math.ceil(result.total / PER_PAGE));
  const link = (n) => { const p = new URLSearchParams(params); p.set("page", n); p.delete("per_page"); return `/products?${p}`; };
  fill(main, 
    h("h1", {}, title),
    h("p", { class: "muted", id: "result-count" }, `${result.total} product${result.total === 1 ? "" : "s"}`),
    result.items.length ? h("div", { class: "grid", id: "products" }, result.items.map(productCard))
      : h("p", {}, q ? "Nothing matches your search." : "No products here yet."),
    pages > 1 ? h("nav", { class: "pager", "aria-label": "Pages" },
      page > 1 ? h("a", { href: link(page - 1) }, "Previous") : null,
      h("span", {}, `Page ${page} of ${pages}`),
      page < pages ? h("a", { href: link(page + 1) }, "Next") : null) : null);
}

/** The home page: the popular products (confirmed orders of the last days), then the catalog. */
export async function home(main, params, signal) {
  await listing(main, params, signal);
  const popular = await api("/api/reports/popular", { signal }).catch(() => ({ items: [] }));
  const products = await productsOf((popular.items || []).map((i) => i.sku), signal);
  if (products.length && !signal.aborted) {
    main.prepend(h("section", { id: "popular", "aria-label": "Popular now" },
      h("h2", {}, "Popular now"), h("div", { class: "grid" }, products.map(productCard))));
  }
}

async function productsOf(skus, signal) {
  const found = await Promise.all(skus.slice(0, 6).map((sku) =>
    api(`/api/products/${encodeURIComponent(sku)}`, { signal }).catch(() => null)));
  return found.filter((p) => p && p.name);
}

async function sameCategory(item, signal) {
  const page = await api(`/api/products?category=${encodeURIComponent(item.category)}&per_page=7`, { signal });
  return page.items || [];
}

// The best sellers; before anything sold, the first products of the category.
async function popularOr(item, sku, signal) {
  const popular = await api("/api/reports/popular", { signal }).catch(() => ({ items: [] }));
  const products = await productsOf((popular.items || []).map((i) => i.sku).filter((s) => s !== sku), signal);
  if (products.length) return { products, title: "Popular right now" };
  const more = (await sameCategory(item, signal)).filter((p) => p.sku !== sku).reverse().slice(0, 6);
  return { products: more, title: "You may also like" };
}

export async function product(main, { sku }, signal) {
  sku = decodeURIComponent(sku);
  const item = await api(`/api/products/${encodeURIComponent(sku)}`, { signal });
  track("product_view", { sku });
  const quantity = field("Quantity", { name: "quantity", type: "number", min: 1, max: 99, value: 1 });
  const similar = h("section", { id: "similar", "aria-label": "Similar products" });
  const recommended = h("section", { id: "recommended", "aria-label": "Recommended for you" });
  fill(main, 
    h("div", { class: "product" },
      thumb(item),
      h("div", {},
        h("h1", {}, item.name),
        h("p", { class: "price" }, money(item.price_cents)),
        h("p", { id: "availability" }, availability(item.stock_level)),
        h("p", {}, item.description || ""),
        h("p", { class: "muted" }, "Category: ", h("a", { href: `/products?category=${encodeURIComponent(item.category)}` }, item.category)),
        h("form", {
          class: "row", onsubmit: (event) => {
            event.preventDefault();
            const n = Math.max(1, Math.min(99, parseInt(quantity[1].value, 10) || 1));
            cart.add(item, n);
            toast(`${item.name} is in your cart`);
          },
        }, h("div", {}, quantity), h("button", { type: "submit", disabled: item.stock_level === "out_of_stock" }, "Add to cart")))),
    similar, recommended);
  // A shop with no history yet has no co-occurrences and no behaviour to go on: these
  // sections then show the category's products and the popular ones rather than nothing.
  const rest = [];
  rest.push(api(`/api/products/${encodeURIComponent(sku)}/similar`, { signal }).then(async (answer) => {
    let products = await productsOf(answer.items.map((i) => i.sku).filter((s) => s !== sku), signal);
    let title = "Customers also viewed";
    if (!products.length) {
      products = (await sameCategory(item, signal)).filter((p) => p.sku !== sku).slice(0, 6);
      title = `More in ${item.category}`;
    }
    if (products.length) fill(similar, h("h2", {}, title), h("div", { class: "grid" }, products.map(productCard)));
  }).catch(() => {}));
  const me = claims();
  if (me) {
    rest.push(api(`/api/recommendations/${encodeURIComponent(me.sub)}`, { signal }).then(async (answer) => {
      let products = await productsOf(answer.items.map((i) => i.sku).filter((s) => s !== sku), signal);
      let title = "Recommended for you";
      if (!products.length) ({ products, title } = await popularOr(item, sku, signal));
      if (products.length) fill(recommended, h("h2", {}, title), h("div", { class: "grid" }, products.map(productCard)));
    }).catch(() => {}));
  }
  await Promise.all(rest);
}

export async function cartPage(main) {
  const draw = () => {
    const lines = cart.items();
    if (!lines.length) {
      fill(main, h("h1", {}, "Your cart"), h("p", {}, "Your cart is empty. ", h("a", { href: "/products" }, "Browse the shop")));
      return;
    }
    fill(main, 
      h("h1", {}, "Your cart"),
      h("div", { class: "table-wrap" }, h("table", { id: "cart" },
        h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", {}, "Price"), h("th", {}, "Quantity"), h("th", {}, h("span", { class: "sr-only" }, "Remove")))),
        h("tbody", {}, lines.map((line) => {
          const [label, input] = field(`Quantity of ${line.name}`, { name: "quantity", type: "number", min: 0, max: 99, value: line.quantity });
          label.className = "sr-only";
          input.addEventListener("change", () => { cart.setQuantity(line.sku, parseInt(input.value, 10) || 0); draw(); });
          return h("tr", { "data-sku": line.sku },
            h("td", {}, h("a", { href: `/products/${encodeURIComponent(line.sku)}` }, line.name)),
            h("td", {}, money(line.price_cents)),
            h("td", {}, label, input),
            h("td", {}, h("button", { type: "button", class: "secondary", "aria-label": `Remove ${line.name}`, onclick: () => { cart.remove(line.sku); draw(); } }, "Remove")));
        })))),
      h("p", { class: "price" }, "Subtotal: ", money(cart.subtotal())),
      h("p", {}, h("a", { class: "button", href: "/checkout" }, "Check out")));
  };
  draw();
}

export function showError(container, error) {
  const message = h("p", { class: "error", role: "alert" }, errorText(error));
  fill(container, message);
}
