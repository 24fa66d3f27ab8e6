// Server-side charts: Chart.js drawn on @napi-rs/canvas (Skia, prebuilt binaries) and encoded
// to PNG, so a report is one HTML file with the pictures inlined as data: URIs.
import { Chart, registerables, type ChartConfiguration, type Plugin } from 'chart.js';
import { createCanvas, GlobalFonts } from '@napi-rs/canvas';
import { existsSync } from 'node:fs';
import type { Block } from '../results.ts';

export type ChartBlock = Extract<Block, { kind: 'chart' }>;

/** CSS-pixel size of a chart in the report; the PNG is this times PIXEL_RATIO. */
export const CHART_WIDTH = 800;
export const CHART_HEIGHT = 400;
export const PIXEL_RATIO = 2;

/** colour-blind-friendly palette (Okabe–Ito, with a darker yellow so it shows on white) */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#56B4E9', '#E69F00', '#000000', '#B8A200'];

// Fonts we know how to use, in order of preference. Skia loads fontconfig's fonts on its own
// on most Debian systems; the paths are a fallback for when it found none (e.g. a minimal
// container) so axis labels are not silently dropped.
const FONT_FAMILIES = ['DejaVu Sans', 'Liberation Sans', 'Noto Sans', 'Arial', 'Helvetica'];
const FONT_FILES = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', // fonts-dejavu-core
  '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', // fonts-liberation
  '/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf', // fonts-liberation2
  '/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf', // fonts-noto-core
];

let setUp = false;
let fontFamily: string | null = null;

/** the font family charts are drawn with, or null if none could be found (text then is not drawn) */
export function chartFont(): string | null {
  setup();
  return fontFamily;
}

function pickFont(): string | null {
  const has = (f: string) => {
    try {
      return GlobalFonts.has(f);
    } catch {
      return false;
    }
  };
  for (const f of FONT_FAMILIES) if (has(f)) return f;
  for (const file of FONT_FILES) {
    if (!existsSync(file)) continue;
    if (GlobalFonts.registerFromPath(file, 'LabSans')) return 'LabSans';
  }
  if (existsSync('/usr/share/fonts')) GlobalFonts.loadFontsFromDir('/usr/share/fonts');
  for (const f of FONT_FAMILIES) if (has(f)) return f;
  const any = GlobalFonts.families.find((f) => !/emoji|symbol|math/i.test(f.family));
  return any?.family ?? null;
}

function setup(): void {
  if (setUp) return;
  setUp = true;
  Chart.register(...registerables);
  fontFamily = pickFont();
  if (fontFamily) Chart.defaults.font.family = `'${fontFamily}', sans-serif`;
  else process.emitWarning('lab/report: no usable font found for charts; install fonts-dejavu-core (labels will be missing)');
  Chart.defaults.locale = 'en-US';
  Chart.defaults.font.size = 12;
  Chart.defaults.color = '#333';
}

const whiteBackground: Plugin = {
  id: 'labWhiteBackground',
  beforeDraw(chart) {
    const { ctx, width, height } = chart;
    ctx.save();
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    ctx.restore();
  },
};

const logTick = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3 });

/** about eight ticks at multiples of 1, 2 or 5 × 10^n inside [min, max] */
export function niceTicks(min: number, max: number, target = 8): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max <= min) return [min];
  const rough = (max - min) / target;
  const mag = Math.pow(10, Math.floor(Math.log10(rough)));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let i = Math.ceil(min / step - 1e-9); i * step <= max + step * 1e-9; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

function chartConfig(block: ChartBlock, pixelRatio: number): ChartConfiguration {
  const numericX = block.type === 'line' && block.labels.length > 0 && block.labels.every((l) => typeof l === 'number' && Number.isFinite(l));
  const manyPoints = block.labels.length > 60;
  const datasets = block.datasets.map((ds, i) => {
    const colour = PALETTE[i % PALETTE.length]!;
    // log scales cannot show 0 or negatives: leave a gap rather than distort the axis
    const y = (v: number | null | undefined) => (v == null || !Number.isFinite(v) || (block.logY && v <= 0) ? null : v);
    const data = numericX
      ? block.labels.map((x, j) => ({ x: x as number, y: y(ds.data[j]) }))
      : block.labels.map((_, j) => y(ds.data[j]));
    return {
      label: ds.label,
      data,
      borderColor: colour,
      backgroundColor: block.type === 'bar' ? colour + 'cc' : colour,
      borderWidth: block.type === 'bar' ? 0 : 2,
      fill: block.stacked && block.type === 'line' ? (i === 0 ? 'origin' : '-1') : false,
      pointRadius: block.type === 'line' ? (manyPoints ? 0 : 3) : undefined,
      spanGaps: false,
      // points on the edge of the plot area are drawn whole
      clip: 6,
    };
  });
  const axisTitle = (text: string | undefined) => ({ display: !!text, text: text ?? '', font: { size: 12, weight: 'bold' as const } });
  return {
    type: block.type,
    data: { labels: numericX ? undefined : block.labels.map(String), datasets: datasets as never },
    options: {
      animation: false,
      responsive: false,
      devicePixelRatio: pixelRatio,
      parsing: numericX ? false : undefined,
      normalized: true,
      plugins: {
        title: { display: !!block.title, text: block.title, font: { size: 15, weight: 'bold' }, color: '#111' },
        legend: { display: block.datasets.length > 1, position: 'bottom', labels: { boxWidth: 14, boxHeight: 14 } },
        tooltip: { enabled: false },
      },
      scales: {
        x: {
          type: numericX ? 'linear' : 'category',
          stacked: !!block.stacked,
          // end the axis at the data, not at the next round tick (1…32 threads, not 0…35)
          bounds: 'data',
          // results written before axes were named carry a bare unit: a unit alone is not a label
          title: axisTitle(block.xLabel === 's' ? 'time (s)' : block.xLabel),
          grid: { color: '#e5e5e5' },
          // with bounds 'data', Chart.js starts the ticks at the data minimum (1, 6, 11 …): use round steps instead
          ...(numericX ? { afterBuildTicks: (axis: { min: number; max: number; ticks: { value: number }[] }) => { axis.ticks = niceTicks(axis.min, axis.max).map((value) => ({ value })); } } : {}),
          ticks: numericX ? {} : { autoSkip: true, maxRotation: 45 },
        },
        y: block.logY
          ? {
              type: 'logarithmic',
              title: axisTitle(block.yLabel),
              grid: { color: '#e5e5e5' },
              // only 1, 2, 5 × 10^n: Chart.js' default log ticks crowd near each decade
              ticks: {
                callback: (v: string | number) => {
                  const n = Number(v);
                  const m = n / Math.pow(10, Math.floor(Math.log10(n) + 1e-9));
                  return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6) ? logTick.format(n) : '';
                },
              },
            }
          : {
              type: 'linear',
              stacked: !!block.stacked,
              beginAtZero: block.type === 'bar' || !!block.stacked,
              title: axisTitle(block.yLabel),
              grid: { color: '#e5e5e5' },
            },
      },
    },
    plugins: [whiteBackground],
  } as ChartConfiguration;
}

/**
 * Render a chart block to a PNG data URI. The image is width×height CSS pixels drawn at
 * pixelRatio (default 2, so it is sharp on HiDPI screens): embed it with width/height set.
 */
export async function chartPng(block: ChartBlock, width = CHART_WIDTH, height = CHART_HEIGHT, pixelRatio = PIXEL_RATIO): Promise<string> {
  setup();
  const canvas = createCanvas(width, height);
  // BasicPlatform (no DOM): Chart.js takes the canvas as it is and scales it by devicePixelRatio
  const chart = new Chart(canvas as unknown as ConstructorParameters<typeof Chart>[0], chartConfig(block, pixelRatio));
  try {
    const png = await canvas.encode('png');
    return `data:image/png;base64,${png.toString('base64')}`;
  } finally {
    chart.destroy();
  }
}
