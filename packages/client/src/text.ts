/**
 * Text that came from the other end (a broker description, a gateway message, an SDK error) is made safe to
 * print on one line: control characters could move a terminal's cursor, rewrite what it shows or forge a line
 * of output. Line breaks and tabs become a space; every other C0 or C1 control, DEL, and the Unicode line
 * separators and bidirectional overrides become U+FFFD.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const controls = /[\u0000-\u0008\u000e-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const lineBreaks = /[\t\n\v\f\r]/g;

/** One printable line, at most `max` characters (an ellipsis marks a cut). */
export function printable(text: string, max = 300): string {
  const flat = text.replace(lineBreaks, ' ').replace(controls, '\uFFFD').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
