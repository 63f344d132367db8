import assert from "node:assert/strict";
import { didYouMean, editDistance } from "./did_you_mean.ts";

Deno.test("edit distance counts inserts, deletes, substitutions and swaps", () => {
  assert.equal(editDistance("content_pth", "content_path"), 1);
  assert.equal(editDistance("memroy", "memory"), 1);
  assert.equal(editDistance("abc", "abc"), 0);
  assert.equal(editDistance("", "abc"), 3);
});

Deno.test("suggests close words, names that contain the word, and nothing for far ones", () => {
  assert.equal(didYouMean("content_pth", ["content_path", "temp_path"]), "content_path");
  assert.equal(didYouMean("Memory", ["memory", "noop"]), "memory");
  assert.equal(didYouMean("CAS_MAIN", ["AC_MAIN_STORE", "CAS_MAIN_STORE"]), "CAS_MAIN_STORE");
  assert.equal(didYouMean("colour", ["eviction_policy"]), undefined);
});
