// Prints the creation bytecode (hex, no 0x) of contracts/Token.sol, compiled
// exactly as the tests compile it. `coco bench erc20` deploys this bytecode;
// regenerate its committed copy with:
//
//   node scripts/token-bytecode.mjs > ../../bench/token.bin
//
// erc20.test.mjs fails when the committed copy and the source disagree.
import { fileURLToPath } from "node:url";
import { compileFiles } from "../lib/coco.mjs";

export function tokenBytecode() {
  const path = fileURLToPath(new URL("../contracts/Token.sol", import.meta.url));
  return compileFiles(path).Token.bytecode.slice(2);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(tokenBytecode() + "\n");
}
