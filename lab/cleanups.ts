// A run's cleanups: what a scenario sets up it registers with ctx.defer, and the runner undoes it
// in reverse order when the scenario ends, fails or is stopped. A stopped scenario's code runs on
// until one of its awaits fails, and may set something up after the cleanups began (a Ctrl-C
// during the security setup left the egress target's netns that way): a cleanup registered then
// runs at once, and drain() waits for those.
export class Cleanups {
  private readonly list: { what: string; fn: () => unknown }[] = [];
  private readonly late: Promise<void>[] = [];
  private closing = false;
  /** the cleanup running now, for a stop that hangs (the runner's stop watchdog names it) */
  current: string | null = null;

  constructor(private readonly warn: (s: string) => void) {}

  defer(what: string, fn: () => unknown): void {
    if (this.closing) this.late.push(this.runOne({ what, fn }));
    else this.list.push({ what, fn });
  }

  /** every registered cleanup, last first; one that fails is reported and the rest still run */
  async run(): Promise<void> {
    this.closing = true;
    while (this.list.length) await this.runOne(this.list.pop()!);
  }

  /** the cleanups registered after run() began, including any they register in turn */
  async drain(): Promise<void> {
    while (this.late.length) await this.late.shift();
  }

  private async runOne(c: { what: string; fn: () => unknown }): Promise<void> {
    this.current = c.what;
    try {
      await c.fn();
    } catch (e) {
      this.warn(`cleanup "${c.what}" failed: ${(e as Error).message}`);
    } finally {
      if (this.current === c.what) this.current = null;
    }
  }
}
