// The cart, kept in this browser (localStorage "shop.cart"): [{sku, name, price_cents, quantity}].

import { track } from "./tracking.js";

const CART_KEY = "shop.cart";

export function items() {
  try {
    const stored = JSON.parse(localStorage.getItem(CART_KEY) || "[]");
    return Array.isArray(stored) ? stored.filter((line) => line && line.sku && line.quantity > 0) : [];
  } catch {
    return [];
  }
}

function save(lines) {
  localStorage.setItem(CART_KEY, JSON.stringify(lines));
  window.dispatchEvent(new CustomEvent("shop:cart"));
}

export function count() { return items().reduce((sum, line) => sum + line.quantity, 0); }

export function subtotal() { return items().reduce((sum, line) => sum + line.quantity * (line.price_cents || 0), 0); }

export function add(product, quantity = 1) {
  const lines = items();
  const line = lines.find((l) => l.sku === product.sku);
  if (line) line.quantity = Math.min(line.quantity + quantity, 99);
  else lines.push({ sku: product.sku, name: product.name, price_cents: product.price_cents, quantity });
  save(lines);
  track("add_to_cart", { sku: product.sku });
}

export function setQuantity(sku, quantity) {
  const lines = items();
  const line = lines.find((l) => l.sku === sku);
  if (!line) return;
  if (quantity <= 0) return remove(sku);
  line.quantity = Math.min(quantity, 99);
  save(lines);
}

export function remove(sku) {
  save(items().filter((l) => l.sku !== sku));
  track("remove_from_cart", { sku });
}

export function clear() { save([]); }

// Another tab changed the cart: tell this page too.
window.addEventListener("storage", (event) => {
  if (event.key === CART_KEY) window.dispatchEvent(new CustomEvent("shop:cart"));
});
