import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileGlob, compileGlobs } from '../../src/policy/matcher.js';

/** The meaning of a glob, written as the anchored regular expression it stands for. */
function reference(glob: string): RegExp {
  let source = '';
  for (const ch of glob) source += ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  return new RegExp(`^(?:${source})$`, 's');
}

describe('globs are matched without backtracking, with the meaning of their regular expression', () => {
  it('agrees with the anchored regular expression on random globs and values', () => {
    const glob = fc.stringMatching(/^[ab*?.-]{0,8}$/);
    const value = fc.stringMatching(/^[ab.\-\n]{0,12}$/);
    fc.assert(
      fc.property(glob, value, (g, v) => {
        expect(compileGlob(g)(v)).toBe(reference(g).test(v));
      }),
      { numRuns: 5_000 },
    );
  });

  it('any of several globs', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[ab*?]{0,5}$/), { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[ab]{0,8}$/), (globs, v) => {
        expect(compileGlobs(globs)(v)).toBe(globs.some((g) => reference(g).test(v)));
      }),
    );
  });

  it.each([
    ['*-*-*-prod', 'eu-west-1-prod', true],
    ['*-*-*-prod', 'eu-west-prod', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['**', '', true],
    ['?*?', 'x', false],
    ['v?.*', 'v1.2', true],
    ['😀*', '😀x', true],
    ['?', '😀', true], // one character, though two UTF-16 units
    ['??', '😀', false],
  ])('%s against %j is %s', (glob, value, expected) => {
    expect(compileGlob(glob)(value)).toBe(expected);
  });

  it('answers a 64 KiB value against many stars (a backtracking matcher would not return)', () => {
    const value = 'a-'.repeat(32 * 1024);
    expect(compileGlob('*-*-*-*-*-*-prod')(value)).toBe(false);
    expect(compileGlob('*-*-*-*-*-*-prod')(`${value}prod`)).toBe(true);
  }, 5_000);
});

describe('? is one character, also outside the Basic Multilingual Plane', () => {
  it('team-? matches team-😀 (two UTF-16 units, one character) and not team-😀😀', () => {
    expect(compileGlob('team-?')('team-😀')).toBe(true);
    expect(compileGlob('team-?')('team-😀😀')).toBe(false);
    expect(compileGlob('team-??')('team-😀😀')).toBe(true);
    expect(compileGlob('*-?-*')('a-😀-b')).toBe(true);
    expect(compileGlob('?')('é')).toBe(true);
  });

  it('agrees with the anchored regular expression in unicode mode on values with astral characters', () => {
    const unicode = (glob: string): RegExp => new RegExp(reference(glob).source, 'su');
    const glob = fc.stringMatching(/^[a*?😀-]{0,7}$/u);
    const value = fc.stringMatching(/^[a😀🎉-]{0,10}$/u);
    fc.assert(
      fc.property(glob, value, (g, v) => {
        expect(compileGlob(g)(v)).toBe(unicode(g).test(v));
      }),
      { numRuns: 3_000 },
    );
  });
});
