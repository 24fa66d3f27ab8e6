// Moved to common/errors.ts (a leaf every layer may import); kept so existing imports compile.
export { LabError } from '../common/errors.ts';
