import assert from "node:assert/strict";
import { formatDuration, formatSize, parseDuration, parseSize } from "./units.ts";

Deno.test("sizes use decimal units for kb/mb/gb and binary for kib/mib", () => {
  assert.equal(parseSize("10gb"), 10_000_000_000);
  assert.equal(parseSize("500mb"), 500_000_000);
  assert.equal(parseSize("1kib"), 1024);
  assert.equal(parseSize("1.5 KiB"), 1536);
  assert.equal(parseSize("2GiB"), 2 * 1024 ** 3);
  assert.equal(parseSize("64k"), 64_000);
  assert.equal(parseSize("123"), 123);
  assert.equal(parseSize("12 B"), 12);
});

Deno.test("sizes reject unknown units and junk", () => {
  assert.equal(parseSize("10 gallons"), undefined);
  assert.equal(parseSize("ten"), undefined);
  assert.equal(parseSize(""), undefined);
  assert.equal(parseSize("-5"), undefined);
});

Deno.test("durations become seconds, fractions kept", () => {
  assert.equal(parseDuration("1h2m"), 3720);
  assert.equal(parseDuration("30s"), 30);
  assert.equal(parseDuration("1.5s"), 1.5);
  assert.equal(parseDuration("250ms"), 0.25);
  assert.equal(parseDuration("1d 2h"), 93600);
  assert.equal(parseDuration("2 minutes"), 120);
  assert.equal(parseDuration("45"), 45);
  assert.equal(parseDuration("1M"), 2_630_016);
});

Deno.test("durations reject unknown units and junk", () => {
  assert.equal(parseDuration("5 fortnights"), undefined);
  assert.equal(parseDuration("1h junk"), undefined);
  assert.equal(parseDuration(""), undefined);
});

Deno.test("formatting is readable", () => {
  assert.equal(formatSize(10_000_000_000), "10 GB");
  assert.equal(formatSize(1536), "1.5 KiB");
  assert.equal(formatSize(999), "999 B");
  assert.equal(formatDuration(3720), "1h2m");
  assert.equal(formatDuration(1.5), "1.5s");
});
