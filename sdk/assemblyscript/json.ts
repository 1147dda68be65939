// A small JSON parser (RFC 8259) for plugin configurations: AssemblyScript's
// standard library has none. parseJSON returns null for anything that is not
// exactly one JSON value (surrounded by optional whitespace).
//
//   const v = parseJSON(text);
//   if (v != null && v.isObject()) { const h = v.get("header"); if (h != null && h.isString()) ... }

export enum JSONKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export class JSONValue {
  kind: JSONKind = JSONKind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  /** Array elements (kind Array). */
  items: Array<JSONValue> = [];
  /** Object member names, in document order (kind Object). */
  keys: Array<string> = [];
  /** Object member values, parallel to keys. */
  values: Array<JSONValue> = [];

  isNull(): bool { return this.kind == JSONKind.Null; }
  isBool(): bool { return this.kind == JSONKind.Bool; }
  isNumber(): bool { return this.kind == JSONKind.Number; }
  isString(): bool { return this.kind == JSONKind.String; }
  isArray(): bool { return this.kind == JSONKind.Array; }
  isObject(): bool { return this.kind == JSONKind.Object; }

  /** The member `key` of an object (the last one when repeated), or null. */
  get(key: string): JSONValue | null {
    if (this.kind != JSONKind.Object) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i] == key) return this.values[i];
    }
    return null;
  }

  /** The member `key` when it is a string, else null. */
  getString(key: string): string | null {
    const v = this.get(key);
    if (v == null || !v.isString()) return null;
    return v.str;
  }
}

/** Nesting deeper than this is refused (the parser recurses). */
const MAX_DEPTH = 64;

class Parser {
  pos: i32 = 0;
  failed: bool = false;
  constructor(public text: string) {}

  fail(): JSONValue {
    this.failed = true;
    return new JSONValue();
  }

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  literal(word: string): bool {
    if (this.text.substr(this.pos, word.length) != word) return false;
    this.pos += word.length;
    return true;
  }

  value(depth: i32): JSONValue {
    if (depth > MAX_DEPTH) return this.fail();
    this.skipWhitespace();
    const c = this.peek();
    if (c == 0x7b /* { */) return this.object(depth);
    if (c == 0x5b /* [ */) return this.array(depth);
    if (c == 0x22 /* " */) {
      const s = this.string();
      const v = new JSONValue();
      v.kind = JSONKind.String;
      v.str = s;
      return v;
    }
    if (c == 0x74 /* t */ || c == 0x66 /* f */) {
      const v = new JSONValue();
      v.kind = JSONKind.Bool;
      if (this.literal("true")) v.bool = true;
      else if (!this.literal("false")) return this.fail();
      return v;
    }
    if (c == 0x6e /* n */) {
      if (!this.literal("null")) return this.fail();
      return new JSONValue();
    }
    if (c == 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) return this.number();
    return this.fail();
  }

  object(depth: i32): JSONValue {
    const v = new JSONValue();
    v.kind = JSONKind.Object;
    this.pos++; // {
    this.skipWhitespace();
    if (this.peek() == 0x7d /* } */) {
      this.pos++;
      return v;
    }
    while (true) {
      this.skipWhitespace();
      if (this.peek() != 0x22) return this.fail();
      const key = this.string();
      if (this.failed) return v;
      this.skipWhitespace();
      if (this.peek() != 0x3a /* : */) return this.fail();
      this.pos++;
      const member = this.value(depth + 1);
      if (this.failed) return v;
      v.keys.push(key);
      v.values.push(member);
      this.skipWhitespace();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c /* , */) continue;
      if (c == 0x7d /* } */) return v;
      return this.fail();
    }
  }

  array(depth: i32): JSONValue {
    const v = new JSONValue();
    v.kind = JSONKind.Array;
    this.pos++; // [
    this.skipWhitespace();
    if (this.peek() == 0x5d /* ] */) {
      this.pos++;
      return v;
    }
    while (true) {
      const item = this.value(depth + 1);
      if (this.failed) return v;
      v.items.push(item);
      this.skipWhitespace();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x5d) return v;
      return this.fail();
    }
  }

  hex4(): i32 {
    if (this.pos + 4 > this.text.length) return -1;
    let n = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.text.charCodeAt(this.pos + i);
      let d: i32;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      else return -1;
      n = (n << 4) | d;
    }
    this.pos += 4;
    return n;
  }

  /** A string token; the opening quote is at pos. Sets failed on error. */
  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let run = this.pos; // start of the current run of plain characters
    while (true) {
      if (this.pos >= t.length) {
        this.failed = true;
        return "";
      }
      const c = t.charCodeAt(this.pos);
      if (c == 0x22) {
        out += t.substring(run, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        // Control characters must be escaped.
        this.failed = true;
        return "";
      }
      if (c != 0x5c /* \ */) {
        this.pos++;
        continue;
      }
      out += t.substring(run, this.pos);
      this.pos++;
      if (this.pos >= t.length) {
        this.failed = true;
        return "";
      }
      const e = t.charCodeAt(this.pos);
      this.pos++;
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75 /* u */) {
        // AssemblyScript strings are UTF-16: a \uXXXX escape is one code
        // unit, so a surrogate pair written as two escapes joins up here.
        const u = this.hex4();
        if (u < 0) {
          this.failed = true;
          return "";
        }
        out += String.fromCharCode(u);
      } else {
        this.failed = true;
        return "";
      }
      run = this.pos;
    }
  }

  number(): JSONValue {
    const t = this.text;
    const start = this.pos;
    if (this.peek() == 0x2d) this.pos++;
    // int: 0 | [1-9][0-9]*
    let c = this.peek();
    if (c == 0x30) this.pos++;
    else if (c >= 0x31 && c <= 0x39) {
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    } else return this.fail();
    // frac
    if (this.peek() == 0x2e) {
      this.pos++;
      c = this.peek();
      if (!(c >= 0x30 && c <= 0x39)) return this.fail();
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    }
    // exp
    c = this.peek();
    if (c == 0x65 || c == 0x45) {
      this.pos++;
      c = this.peek();
      if (c == 0x2b || c == 0x2d) this.pos++;
      c = this.peek();
      if (!(c >= 0x30 && c <= 0x39)) return this.fail();
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    }
    const v = new JSONValue();
    v.kind = JSONKind.Number;
    v.num = parseFloat(t.substring(start, this.pos));
    return v;
  }
}

/** Parses `text` as one JSON value; null when it is not valid JSON. */
export function parseJSON(text: string): JSONValue | null {
  const p = new Parser(text);
  const v = p.value(0);
  if (p.failed) return null;
  p.skipWhitespace();
  if (p.pos != text.length) return null;
  return v;
}
