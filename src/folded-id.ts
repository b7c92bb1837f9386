import { INVISIBLE_CHARACTERS } from './invisible.js';

const INVISIBLE = new RegExp(`[${INVISIBLE_CHARACTERS}]`, 'gu');

/**
 * An id as a lenient reader reads it: ignoring case, whitespace at either end,
 * invisible characters and Unicode compatibility forms (a fullwidth `ｃ` is `c`).
 * Identity providers, LDAP and SQL collations often read ids this way, so two ids
 * that fold alike may name one principal or resource: the directories refuse an id
 * that folds to a listed one, and a suspension holds for every spelling of its id.
 */
export function foldedId(id: string): string {
  // ASCII is unchanged by normalisation and holds no invisible character: only other text pays for them.
  return (/[^\u0000-\u007f]/.test(id) ? id.normalize('NFKC').replace(INVISIBLE, '') : id).trim().toLowerCase();
}

/**
 * What `foldedId` returns depends on: this code, INVISIBLE_CHARACTERS, and the
 * Unicode version of the running Node (NFKC and `\p{Cf}` grow with it). The
 * suspensions table stores each id's fold; a log last folded under another one is
 * folded again when it is opened, or a lift would miss a spelling stored under the
 * old fold. Raise the number with any change to what `foldedId` returns
 * (test/decisions/suspension-fold.test.ts holds the folds of tricky spellings it was set for).
 */
export const FOLD_IDENTITY = `fold 1, unicode ${process.versions.unicode ?? 'unknown'}`;
