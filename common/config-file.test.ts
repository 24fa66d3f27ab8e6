// Config syntax errors as file positions (pure).
import { describe, expect, it } from 'vitest';
import { jsonSyntaxError, parseJson, parseYamlFile } from './config-file.ts';

const fault = (text: string) => {
  try {
    JSON.parse(text);
  } catch (e) {
    return jsonSyntaxError(text, e);
  }
  throw new Error(`valid JSON: ${text}`);
};

describe('jsonSyntaxError', () => {
  it('names a trailing comma at the comma, in an object or a list, whatever V8 says', () => {
    expect(fault('{\n  "a": 1,\n}\n')).toEqual({ line: 2, col: 9, message: "not valid JSON: a trailing comma before '}'" });
    expect(fault('{\n  "a": [1,\n  ]\n}')).toEqual({ line: 2, col: 10, message: "not valid JSON: a trailing comma before ']'" });
  });

  it('other faults at V8\'s offset, on one line, without the quoted text', () => {
    expect(fault('{"a": 1} x')).toEqual({ line: 1, col: 10, message: 'not valid JSON: Unexpected non-whitespace character after JSON' });
    expect(fault('{\n  "a": 1\n  "b": 2\n}')).toEqual({ line: 3, col: 3, message: "not valid JSON: Expected ',' or '}' after property value" });
    const noPos = fault('{\n  # comment\n  "a": 1\n}');
    expect(noPos.message).toMatch(/^not valid JSON: [^\n]*$/);
    expect(noPos.message).not.toContain('comment');
  });
});

describe('jsonSyntaxError where V8 quotes context instead of an offset', () => {
  it('places the fault from the quoted context', () => {
    expect(fault('{\n  "interface": "lb0",\n  "vips": [,]\n}\n')).toEqual({ line: 3, col: 12, message: "not valid JSON: Unexpected token ','" });
    expect(fault('[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, ]')).toEqual({ line: 1, col: 47, message: "not valid JSON: a trailing comma before ']'" });
    expect(fault('{"a": [1, 2,]}')).toEqual({ line: 1, col: 12, message: "not valid JSON: a trailing comma before ']'" });
  });
});

describe('parseJson', () => {
  it('returns the value, or throws the caller\'s error naming file:line:col', () => {
    expect(parseJson('{"a": [1]}', 'f.json', (m) => new Error(m))).toEqual({ a: [1] });
    class Mine extends Error {}
    expect(() => parseJson('{\n  "a": 1,\n}', 'f.json', (m) => new Mine(m))).toThrow(new Mine("f.json:2:9: not valid JSON: a trailing comma before '}'"));
  });
});

describe('parseYamlFile', () => {
  it('returns the value, or throws the caller\'s error as file:line:col and one line', () => {
    expect(parseYamlFile('a: [1, 2]\nb: x\n', 'f.yaml', (m) => new Error(m)).value).toEqual({ a: [1, 2], b: 'x' });
    class Mine extends Error {}
    expect(() => parseYamlFile('a: 1\nb: 2\na: 3\n', 'f.yaml', (m) => new Mine(m))).toThrow(new Mine('f.yaml:3:1: Map keys must be unique'));
    expect(() => parseYamlFile('vips: [\n', 'f.yaml', (m) => new Mine(m))).toThrow(/^f\.yaml:2:1: [^\n]+$/);
  });
});
