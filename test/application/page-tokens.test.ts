import { describe, expect, it } from 'vitest';
import { PageTokens } from '../../src/application/page-tokens.ts';
import { InvalidArgumentError } from '../../src/domain/errors.ts';

describe('PageTokens', () => {
  const tokens = new PageTokens('deployment-a');

  it('gives back the position, for the query it was made for only', () => {
    const token = tokens.issue('ListCoupons campaign=x', '42');
    expect(tokens.read('ListCoupons campaign=x', token)).toBe('42');
    expect(() => tokens.read('ListCoupons campaign=y', token)).toThrow(InvalidArgumentError);
    expect(() => new PageTokens('deployment-b').read('ListCoupons campaign=x', token)).toThrow(
      InvalidArgumentError,
    );
  });

  it('refuses a token altered anywhere, or not one at all', () => {
    const token = tokens.issue('q', '01a2');
    for (let i = 0; i < token.length; i++) {
      if (token[i] === '.') continue;
      const altered = `${token.slice(0, i)}${token[i] === 'A' ? 'B' : 'A'}${token.slice(i + 1)}`;
      expect(() => tokens.read('q', altered)).toThrow(InvalidArgumentError);
    }
    for (const bad of ['', '.', 'a.b.c', 'x'.repeat(300), `${Buffer.from('99').toString('base64url')}.`]) {
      expect(() => tokens.read('q', bad)).toThrow(InvalidArgumentError);
    }
  });
});
