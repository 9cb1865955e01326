// Prints the creation bytecode (hex, no 0x) of contracts/Token.sol, compiled
// exactly as the tests compile it. `coco bench erc20` deploys this bytecode;
// regenerate its committed copies with:
//
//   node scripts/token-bytecode.mjs > ../../bench/token.bin
//   node scripts/token-bytecode.mjs shanghai > ../../bench/token-shanghai.bin
//
// The second is for chains that know no fork after Shanghai (ganache), which
// bench/compare.sh measures coco against. bench-bytecode.test.mjs fails when
// a committed copy and the source disagree.
import { fileURLToPath } from "node:url";
import { compileFilesFor } from "../lib/coco.mjs";

export function tokenBytecode(evmVersion) {
  const path = fileURLToPath(new URL("../contracts/Token.sol", import.meta.url));
  return compileFilesFor(evmVersion, path).Token.bytecode.slice(2);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(tokenBytecode(process.argv[2]) + "\n");
}
