// Errors a user can act on: a message and, where we know it, the fix.
export class LabError extends Error {
  constructor(message: string, readonly fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LabError';
  }
}
