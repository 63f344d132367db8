/**
 * Human-friendly sizes and durations in config values: `"10gb"`, `"1kib"`, `"1h2m"`, `"1.5s"`.
 *
 * Sizes follow NativeLink (byte-unit, case-insensitive): `kb`/`k` = 1000, `kib`/`ki` = 1024, and so on up to
 * `eb`/`eib`. Durations follow humantime: a sequence of `<number><unit>` parts (`ns`, `us`, `ms`, `s`, `m`, `h`,
 * `d`, `w`, `M` = 30.44 days, `y` = 365.25 days, plus long spellings); a bare number means seconds.
 *
 * @example
 * ```ts
 * import { parseDuration, parseSize } from "./units.ts";
 * parseSize("500mb"); // 500_000_000
 * parseDuration("1h2m"); // 3720
 * ```
 * @module
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  ki: 1024,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
  p: 1e15,
  pb: 1e15,
  pi: 1024 ** 5,
  pib: 1024 ** 5,
  e: 1e18,
  eb: 1e18,
  ei: 1024 ** 6,
  eib: 1024 ** 6,
};

const SECOND_UNITS: Record<string, number> = {
  ns: 1e-9,
  nsec: 1e-9,
  nanos: 1e-9,
  us: 1e-6,
  usec: 1e-6,
  micros: 1e-6,
  ms: 1e-3,
  msec: 1e-3,
  millis: 1e-3,
  s: 1,
  sec: 1,
  secs: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hrs: 3600,
  hour: 3600,
  hours: 3600,
  d: 86400,
  day: 86400,
  days: 86400,
  w: 604800,
  week: 604800,
  weeks: 604800,
  M: 2_630_016,
  month: 2_630_016,
  months: 2_630_016,
  y: 31_557_600,
  year: 31_557_600,
  years: 31_557_600,
};

/**
 * Parses a data size into a whole number of bytes; returns `undefined` when the text is not a size.
 *
 * @example
 * ```ts
 * parseSize("1.5 KiB"); // 1536
 * ```
 */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const factor = SIZE_UNITS[(m[2] ?? "").toLowerCase()];
  if (factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}

/**
 * Parses a duration into seconds (fractions kept); returns `undefined` when the text is not a duration.
 *
 * @example
 * ```ts
 * parseDuration("1m30s"); // 90
 * parseDuration("250ms"); // 0.25
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  if (/^\d+(?:\.\d*)?$/.test(trimmed)) return Number(trimmed);
  const part = /\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)/y;
  let total = 0;
  let pos = 0;
  while (pos < trimmed.length) {
    part.lastIndex = pos;
    const m = part.exec(trimmed);
    if (!m) return undefined;
    const unit = m[2] ?? "";
    const factor = SECOND_UNITS[unit] ?? (unit === "M" ? undefined : SECOND_UNITS[unit.toLowerCase()]);
    if (factor === undefined) return undefined;
    total += Number(m[1]) * factor;
    pos = part.lastIndex;
  }
  // Round away float noise from sub-second units (e.g. 0.1 + 0.2).
  return Math.round(total * 1e9) / 1e9;
}

/**
 * Formats a byte count for humans: exact decimal or binary units when they fit (`10 GB`, `64 KiB`), else an
 * approximate binary one (`1.4 MiB`).
 *
 * @example
 * ```ts
 * formatSize(10_000_000_000); // "10 GB"
 * formatSize(1_500_000); // "1.5 MB"
 * ```
 */
export function formatSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  for (const [unit, size] of [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["KB", 1e3]] as const) {
    if (bytes >= size && (bytes / size) * 10 === Math.round((bytes / size) * 10)) {
      return `${bytes / size} ${unit}`;
    }
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${Number(value.toFixed(1))} ${units[i]}`;
}

/**
 * Formats seconds for humans (`1h2m`, `30s`, `1.5s`).
 *
 * @example
 * ```ts
 * formatDuration(3720); // "1h2m"
 * ```
 */
export function formatDuration(seconds: number): string {
  if (seconds < 60 || !Number.isInteger(seconds)) return `${seconds}s`;
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join("");
}
