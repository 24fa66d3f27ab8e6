// Moved to common/host.ts (a leaf every layer may import); kept so existing imports compile.
export * from '../common/host.ts';
