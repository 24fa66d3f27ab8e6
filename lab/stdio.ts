// Moved to common/stdio.ts (a leaf every layer may import); kept so existing imports compile.
export * from '../common/stdio.ts';
