// `coco bench erc20` deploys committed copies of Token.sol's bytecode
// (bench/token.bin, and bench/token-shanghai.bin for chains that know no
// newer fork; both embedded in the coco binary). This checks that the copies
// are what Token.sol compiles to today; regenerate them with the commands in
// scripts/token-bytecode.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tokenBytecode } from "./scripts/token-bytecode.mjs";

for (const [file, evmVersion] of [["token.bin", undefined], ["token-shanghai.bin", "shanghai"]]) {
  test(`bench/${file} is the bytecode of contracts/Token.sol (EVM ${evmVersion ?? "default"})`, () => {
    const committed = readFileSync(fileURLToPath(new URL(`../../bench/${file}`, import.meta.url)), "utf8").trim();
    const arg = evmVersion ? ` ${evmVersion}` : "";
    assert.equal(committed, tokenBytecode(evmVersion), `bench/${file} is stale: node scripts/token-bytecode.mjs${arg} > ../../bench/${file}`);
  });
}
