// Small DOM helpers shared by the views (no innerHTML with data: text only).

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export const fileName = (path) => path.split("/").pop();

/** Alt text: what we know about an image (folder label and file name). */
export function altText(img) {
  const name = fileName(img.path);
  return img.label ? `${img.label}: ${name}` : name;
}

export const pct = (score) => `${Math.round(score * 100)}%`;

export function showError(box, err) {
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = err.message || String(err);
  box.hidden = false;
}

let toastTimer = 0;
export function toast(message) {
  const t = $("#toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 2600);
}

/** A thumbnail card: the image button plus an optional score and caption. */
export function imageCard(img, opts = {}) {
  const { onOpen, onDetails, badge, scoreWord = "similar" } = opts;
  const score = "score" in opts ? opts.score : img.score;
  const thumb = el("img", {
    src: img.thumbnail_url,
    alt: altText(img),
    loading: "lazy",
    decoding: "async",
    width: 256,
    height: 256,
  });
  const main = el(
    "button",
    {
      type: "button",
      class: "card-main",
      title: `${img.path}\nFind images like this`,
      "aria-label": `${altText(img)}${score !== undefined ? `, ${pct(score)} ${scoreWord}` : ""}. Find images like this`,
      onclick: () => onOpen && onOpen(img),
    },
    thumb,
  );
  const meta = el(
    "div",
    { class: "card-meta" },
    score !== undefined ? el("span", { class: "score", text: pct(score) }) : null,
    badge ? el("span", { class: "badge", text: badge }) : null,
    el("span", { class: "name", text: img.label || fileName(img.path) }),
    onDetails
      ? el("button", {
          type: "button",
          class: "details-button",
          "aria-label": `Details of ${altText(img)}`,
          title: "Details",
          text: "i",
          onclick: () => onDetails(img),
        })
      : null,
  );
  return el("li", { class: "card", dataset: { id: img.id } }, main, meta);
}
