/**
 * Characters that hide or disguise what a recorded value says when it is shown:
 * Unicode format characters (bidi overrides and isolates, zero-width spaces and
 * joiners, soft hyphens, tags), the line and paragraph separators, and what renders
 * as nothing or as a blank (variation selectors, the combining grapheme joiner,
 * no-break and other spaces, Hangul fillers, the blank braille cell). The body of a
 * regular-expression character class (flag `u`): `verdict decisions` and the console
 * both show these escaped, so `da\u200Bna` never reads as `dana`.
 */
export const INVISIBLE_CHARACTERS = String.raw`\p{Cf}\u2028\u2029\u00A0\u034F\u115F\u1160\u1680\u2000-\u200A\u202F\u205F\u2800\u3000\u3164\uFE00-\uFE0F\uFFA0\u{E0100}-\u{E01EF}`;
