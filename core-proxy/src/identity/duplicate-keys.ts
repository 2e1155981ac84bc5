/**
 * Whether a JSON text names a member twice in one object. `JSON.parse` keeps the last of two
 * `"sub"`s silently, while another parser (the issuer's, a log reader's) may keep the first: a
 * token with a duplicated claim means different things to different readers, so it is refused.
 * Member names are compared decoded (`"s\u0075b"` is `"sub"`). The text is not validated here:
 * `JSON.parse` does that next.
 */
export function hasDuplicateKeys(text: string): boolean {
  // One entry per open container: the member names of an object, or null for an array.
  const open: (Set<string> | null)[] = [];
  let expectName = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const names = open.at(-1);
      if (names && expectName) {
        let name: string;
        try {
          name = JSON.parse(text.slice(i, end + 1)) as string;
        } catch {
          return false;
        }
        if (names.has(name)) return true;
        names.add(name);
        expectName = false;
      }
      i = end;
    } else if (c === '{') {
      open.push(new Set());
      expectName = true;
    } else if (c === '[') {
      open.push(null);
      expectName = false;
    } else if (c === '}' || c === ']') {
      open.pop();
      expectName = false;
    } else if (c === ',') {
      expectName = open.at(-1) instanceof Set;
    }
  }
  return false;
}
