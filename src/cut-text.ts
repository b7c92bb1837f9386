// Text quoted back to a caller or into the log is cut to a length; never in the
// middle of a character. Half of a surrogate pair is not well-formed text: it was
// recorded as such, and gRPC's status message (percent-encoded with encodeURI)
// threw on it, which ended the server.

/** `text` when it is at most `max` UTF-16 units long, else its first `max` or `max - 1` units (never half a pair) and `…`. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  const end = last >= 0xd800 && last <= 0xdbff ? max - 1 : max;
  return `${text.slice(0, end)}…`;
}
