import { describe, expect, it } from 'vitest';
import { Cleanups } from './cleanups.ts';

describe('a run\'s cleanups', () => {
  it('run in reverse order; a failing one is reported and the rest still run', async () => {
    const done: string[] = [];
    const warned: string[] = [];
    const c = new Cleanups((s) => warned.push(s));
    c.defer('a', () => done.push('a'));
    c.defer('b', () => {
      throw new Error('boom');
    });
    c.defer('c', async () => {
      await new Promise((r) => setTimeout(r, 5));
      done.push('c');
    });
    await c.run();
    expect(done).toEqual(['c', 'a']);
    expect(warned).toEqual(['cleanup "b" failed: boom']);
  });

  it('one registered after the cleanups began (a stopped scenario still setting up) runs at once, and drain waits for it', async () => {
    const done: string[] = [];
    const c = new Cleanups(() => {});
    c.defer('first', async () => {
      // registered while the cleanups run
      c.defer('during', async () => {
        await new Promise((r) => setTimeout(r, 10));
        done.push('during');
      });
      done.push('first');
    });
    await c.run();
    // registered after they ran
    c.defer('after', () => {
      c.defer('nested', () => done.push('nested'));
      done.push('after');
    });
    await c.drain();
    expect(done.sort()).toEqual(['after', 'during', 'first', 'nested']);
  });

  it('before run(), nothing runs: a defer only registers', async () => {
    let ran = false;
    const c = new Cleanups(() => {});
    c.defer('x', () => (ran = true));
    await c.drain();
    expect(ran).toBe(false);
    await c.run();
    expect(ran).toBe(true);
  });
});
