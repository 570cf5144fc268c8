// ANSI SGR colour codes in agent output into runs of text with CSS
// classes: the page renders each run as a text node in a <span>, never as
// HTML, and with classes, not style attributes (the CSP forbids inline
// style). Other escape sequences are dropped.

const ESC = /\x1b\[([0-9;]*)([A-Za-z])|\x1b[@-_]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

export function ansiRuns(text) {
  const runs = [];
  let fg = null, bg = null, bold = false, underline = false;
  let last = 0;
  const push = (s) => {
    if (!s) return;
    const cls = [];
    if (fg !== null) cls.push(`ansi-fg-${fg}`);
    if (bg !== null) cls.push(`ansi-bg-${bg}`);
    if (bold) cls.push('ansi-bold');
    if (underline) cls.push('ansi-underline');
    runs.push({ text: s, cls: cls.join(' ') });
  };
  for (const m of text.matchAll(ESC)) {
    push(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[2] !== 'm') continue;
    const codes = m[1] === '' ? [0] : m[1].split(';').map((c) => parseInt(c, 10) || 0);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { fg = bg = null; bold = underline = false; }
      else if (c === 1) bold = true;
      else if (c === 4) underline = true;
      else if (c === 22) bold = false;
      else if (c === 24) underline = false;
      else if (c >= 30 && c <= 37) fg = c - 30;
      else if (c >= 90 && c <= 97) fg = c - 90 + 8;
      else if (c === 39) fg = null;
      else if (c >= 40 && c <= 47) bg = c - 40;
      else if (c >= 100 && c <= 107) bg = c - 100 + 8;
      else if (c === 49) bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
        // 256 colours: the 16 base ones keep their class, the rest fold to the nearest base
        const v = codes[i + 2] ?? 0;
        const base = v < 16 ? v : 7;
        if (c === 38) fg = base; else bg = base;
        i += 2;
      } else if ((c === 38 || c === 48) && codes[i + 1] === 2) i += 4;
    }
  }
  push(text.slice(last));
  return runs;
}
