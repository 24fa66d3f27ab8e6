// Moved to common/args.ts (a leaf every layer may import); kept so existing imports compile.
export * from '../common/args.ts';
