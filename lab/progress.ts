// Moved to common/progress.ts (a leaf every layer may import); kept so existing imports compile.
export { createProgress, type Progress } from '../common/progress.ts';
