// The HTTP reference page (GET /docs): /openapi.json rendered as HTML, with nothing from
// another origin. Schemas are shown as JSON, their $refs as links to the Schemas section.

import { call, signIn, signOut } from "./api.js";

const $ = (id) => document.getElementById(id);
const METHODS = ["get", "put", "post", "delete", "patch"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function refName(ref) {
  return ref.slice(ref.lastIndexOf("/") + 1);
}

// Pretty-printed JSON as DOM nodes: a "$ref" value becomes a link to its schema.
function json(value, indent = "") {
  const out = document.createDocumentFragment();
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (!value.length) return document.createTextNode("[]");
    out.append("[\n");
    value.forEach((item, i) => {
      out.append(inner, json(item, inner), i < value.length - 1 ? ",\n" : "\n");
    });
    out.append(`${indent}]`);
  } else if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return document.createTextNode("{}");
    out.append("{\n");
    entries.forEach(([key, item], i) => {
      out.append(`${inner}${JSON.stringify(key)}: `);
      if (key === "$ref" && typeof item === "string" && item.startsWith("#/components/schemas/")) {
        out.append(el("a", { href: `#schema-${refName(item)}`, text: JSON.stringify(item) }));
      } else {
        out.append(json(item, inner));
      }
      out.append(i < entries.length - 1 ? ",\n" : "\n");
    });
    out.append(`${indent}}`);
  } else {
    out.append(JSON.stringify(value));
  }
  return out;
}

function schemaBlock(schema) {
  return el("pre", { class: "schema" }, json(schema));
}

function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) bounds.push(`≤ ${schema.maximum}`);
  if (schema.pattern) bounds.push(`pattern ${schema.pattern}`);
  return bounds.length ? `${type} (${bounds.join(", ")})` : type;
}

function parameters(list) {
  const table = el("table", {}, el("thead", {}, el("tr", {},
    ...["Parameter", "In", "Required", "Type", "Description"].map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const p of list) {
    body.append(el("tr", {},
      el("td", {}, el("code", { text: p.name })),
      el("td", { text: p.in }),
      el("td", { text: p.required ? "yes" : "no" }),
      el("td", { class: "mono", text: p.schema && p.schema.type === "object" && p.style === "form"
        ? Object.keys(p.schema.properties || {}).join(" | ") : typeOf(p.schema) }),
      el("td", { text: p.description || "" })));
  }
  table.append(body);
  return table;
}

function content(map) {
  const out = document.createDocumentFragment();
  for (const [type, media] of Object.entries(map || {})) {
    out.append(el("p", {}, el("code", { text: type })));
    if (media.schema) out.append(schemaBlock(media.schema));
  }
  return out;
}

function responses(doc, map) {
  const list = el("dl", { class: "responses" });
  for (const [status, given] of Object.entries(map)) {
    const response = given.$ref ? doc.components.responses[refName(given.$ref)] : given;
    list.append(el("dt", { text: status }), el("dd", {}, response.description || "", content(response.content)));
  }
  return list;
}

function operation(doc, path, method, op, shared) {
  const id = `op-${op.operationId || `${method}-${path}`}`;
  const section = el("section", { id, class: "operation" },
    el("h3", {}, el("span", { class: `method ${method}`, text: method.toUpperCase() }), " ", el("code", { text: path })),
    el("p", { text: op.summary || "" }));
  if (Array.isArray(op.security) && !op.security.length && doc.security) {
    section.append(el("p", { class: "note", text: "No token needed." }));
  }
  const params = [...shared, ...(op.parameters || [])];
  if (params.length) section.append(el("h4", { text: "Parameters" }), parameters(params));
  if (op.requestBody) {
    section.append(el("h4", { text: `Request body${op.requestBody.required ? "" : " (optional)"}` }));
    if (op.requestBody.description) section.append(el("p", { text: op.requestBody.description }));
    section.append(content(op.requestBody.content));
  }
  section.append(el("h4", { text: "Responses" }), responses(doc, op.responses));
  return [id, section];
}

function render(doc) {
  $("intro").append(
    el("h2", { text: `${doc.info.title} — API version ${doc.info.version} (OpenAPI ${doc.openapi})` }),
    el("p", { text: doc.info.description || "" }));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const [id, section] = operation(doc, path, method, item[method], item.parameters || []);
      $("operations").append(section);
      $("contents").append(el("li", {}, el("a", { href: `#${id}` },
        el("span", { class: `method ${method}`, text: method.toUpperCase() }), " ",
        el("code", { text: path })), ` ${item[method].summary || ""}`));
    }
  }
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    $("schema-list").append(el("section", { id: `schema-${name}` }, el("h3", { text: name }), schemaBlock(schema)));
  }
}

async function main() {
  const grant = await signIn($("signin"), $("token"), $("signin-error"));
  if (grant.auth) {
    $("sign-out").addEventListener("click", signOut);
    $("who").hidden = false;
  }
  render(await call("GET", "/openapi.json"));
  $("reference").hidden = false;
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

main().catch((error) => {
  $("status").textContent = `The reference could not load: ${error.message}`;
  $("status").className = "error";
  $("status").hidden = false;
});
