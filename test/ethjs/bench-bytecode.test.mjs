// `coco bench erc20` deploys a committed copy of Token.sol's bytecode
// (bench/token.bin, embedded in the coco binary). This checks that the copy
// is what Token.sol compiles to today; regenerate it with the command in
// scripts/token-bytecode.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tokenBytecode } from "./scripts/token-bytecode.mjs";

test("bench/token.bin is the bytecode of contracts/Token.sol", () => {
  const committed = readFileSync(fileURLToPath(new URL("../../bench/token.bin", import.meta.url)), "utf8").trim();
  assert.equal(committed, tokenBytecode(), "bench/token.bin is stale: node scripts/token-bytecode.mjs > ../../bench/token.bin");
});
