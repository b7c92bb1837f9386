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
