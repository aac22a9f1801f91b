// Unknown fields: the API server rejects them (kubectl's default field
// validation is Strict), but kubernetes-models' validators accept them, so
// that a typo such as `hostNetwrok: true` would pass. This walks an object
// against the TypeScript declarations the models ship (`*.d.ts`: every
// property of every type, nested types by import) and lists the paths of
// fields no declaration has. Types it cannot resolve (aliases such as
// Quantity or IntOrString) are not looked into.
'use strict';
const fs = require('fs');
const path = require('path');

function tokenize(text) {
  text = text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/.*$/gm, ' ');
  return text.match(/"(?:[^"\\]|\\.)*"|[A-Za-z_$][\w$]*|\d+|\S/g) || [];
}

// A type: {kind: 'object', props: Map, index: type|null} | {kind: 'array', of}
// | {kind: 'ref', name, file} | {kind: 'any'}
function parseType(t, file) {
  const alts = [parsePrimary(t, file)];
  while (t.toks[t.i] === '|') { t.i++; alts.push(parsePrimary(t, file)); }
  const structured = alts.filter((a) => a.kind !== 'any');
  return structured.length === 1 && alts.length === 1 ? structured[0] : (structured.length === 1 ? structured[0] : { kind: 'any' });
}
function parsePrimary(t, file) {
  const tok = t.toks[t.i++];
  if (tok === 'Array' && t.toks[t.i] === '<') {
    t.i++;
    const of = parseType(t, file);
    expect(t, '>');
    return { kind: 'array', of };
  }
  if (tok === '{') return parseMembers(t, file);
  if (/^[A-Za-z_]/.test(tok) && !['string', 'number', 'boolean', 'any', 'unknown', 'null', 'true', 'false'].includes(tok)) {
    return { kind: 'ref', name: tok, file };
  }
  return { kind: 'any' }; // literals and primitives
}
function expect(t, tok) {
  if (t.toks[t.i] !== tok) throw new Error(`expected ${tok}, got ${t.toks[t.i]}`);
  t.i++;
}
function parseMembers(t, file) {
  const props = new Map();
  let index = null;
  while (t.toks[t.i] !== '}') {
    if (t.toks[t.i] === '[') { // [key: string]: T;
      while (t.toks[t.i] !== ']') t.i++;
      t.i++;
      expect(t, ':');
      index = parseType(t, file);
    } else {
      const name = t.toks[t.i++].replace(/^"|"$/g, '');
      if (t.toks[t.i] === '?') t.i++;
      expect(t, ':');
      props.set(name, parseType(t, file));
    }
    if (t.toks[t.i] === ';' || t.toks[t.i] === ',') t.i++;
  }
  t.i++;
  return { kind: 'object', props, index };
}

const files = new Map(); // file -> {imports: Map name->file, exported: Map name->type}
function load(file) {
  if (files.has(file)) return files.get(file);
  const info = { imports: new Map(), exported: new Map() };
  files.set(file, info);
  const text = fs.readFileSync(file, 'utf8');
  for (const m of text.matchAll(/import \{([^}]*)\} from "([^"]+)"/g)) {
    let target = m[2];
    target = target.startsWith('.') ? path.resolve(path.dirname(file), target) : require.resolve(`${target}.d.ts`.replace(/\.d\.ts$/, ''), { paths: [__dirname] }).replace(/\.js$/, '');
    for (const n of m[1].split(',').map((s) => s.trim()).filter(Boolean)) info.imports.set(n.split(/\s+as\s+/).pop(), `${target}.d.ts`);
  }
  const local = new Map();
  for (const m of text.matchAll(/export interface (\w+)(?: extends (\w+))? \{/g)) {
    const t = { toks: tokenize(text.slice(m.index + m[0].length)), i: 0 };
    const type = parseMembers(t, file);
    if (m[2] === 'TypeMeta') { type.props.set('apiVersion', { kind: 'any' }); type.props.set('kind', { kind: 'any' }); }
    local.set(m[1], type);
  }
  for (const m of text.matchAll(/export \{([^}]*)\}/g)) {
    for (const part of m[1].split(',')) {
      const [from, as] = part.trim().split(/\s+as\s+/);
      if (local.has(from)) info.exported.set(as || from, local.get(from));
    }
  }
  for (const [n, t] of local) info.exported.set(n, t);
  return info;
}
function resolve(type) {
  if (type.kind !== 'ref') return type;
  const info = load(type.file);
  if (info.exported.has(type.name)) return info.exported.get(type.name);
  const target = info.imports.get(type.name);
  if (!target || !fs.existsSync(target)) return { kind: 'any' };
  const found = load(target).exported.get(type.name);
  return found || { kind: 'any' };
}

function walk(value, type, where, out) {
  type = resolve(type);
  if (value === null || value === undefined) return;
  if (type.kind === 'array' && Array.isArray(value)) value.forEach((v, i) => walk(v, type.of, `${where}[${i}]`, out));
  if (type.kind === 'object' && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (type.props.has(k)) walk(v, type.props.get(k), `${where}.${k}`, out);
      else if (type.index) walk(v, type.index, `${where}.${k}`, out);
      else out.push(`${where}.${k}`);
    }
  }
}

// DECLARATIONS: the .d.ts of the model class (e.g. kubernetes-models/apps/v1/DaemonSet.d.ts).
function unknownFields(obj, declarations) {
  const info = load(declarations);
  const top = info.exported.get(`I${obj.kind}`);
  if (!top) throw new Error(`${declarations} declares no I${obj.kind}`);
  const out = [];
  walk(obj, top, '', out);
  return out.map((p) => p.replace(/^\./, ''));
}
module.exports = { unknownFields };
