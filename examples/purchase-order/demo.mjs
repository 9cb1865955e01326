// Purchase orders on coco: who can see what.
//
//   cd test/ethjs && npm ci
//   COCO_SANDBOX=/tmp/sb/sandbox.json node ../../examples/purchase-order/demo.mjs
//
// Uses test/ethjs/lib/coco.mjs, and through it the ethers and solc installed
// in test/ethjs/node_modules.

import { fileURLToPath } from "node:url";
import { closeProviders, compileFiles, ethers, loadSandbox, userWallet } from "../../test/ethjs/lib/coco.mjs";

const sb = loadSandbox();
if (sb.users.length < 3) throw new Error("the demo needs at least 3 users (coco sandbox --users 3)");

const retailer = userWallet(sb, 0);
const distributorA = userWallet(sb, 1);
const distributorB = userWallet(sb, 2);
// With a 4th user (coco sandbox --users 4) the vendor is user3 and can look
// too; otherwise it is an address outside the consortium.
const vendorWallet = sb.users.length >= 4 ? userWallet(sb, 3) : null;
const vendor = vendorWallet?.address ?? ethers.Wallet.createRandom().address;

const parties = [
  ["retailer (user0)", retailer, "retailer"],
  ["distributor A (user1, assigned)", distributorA, "dist. A"],
  ["distributor B (user2, not assigned)", distributorB, "dist. B"],
  ...(vendorWallet ? [["vendor (user3)", vendorWallet, "vendor"]] : []),
];

const { PurchaseOrder } = compileFiles(fileURLToPath(new URL("./PurchaseOrder.sol", import.meta.url)));
const iface = new ethers.Interface(PurchaseOrder.abi);
const statusName = ["None", "Created", "Accepted", "Shipped", "Delivered"];
const steps = [];

async function step(what, txPromise) {
  const tx = await txPromise;
  const receipt = await (tx.wait ? tx.wait() : tx.deploymentTransaction().wait());
  const events = receipt.logs.map((l) => iface.parseLog(l)?.name).join(", ") || "no events";
  console.log(`  block ${receipt.blockNumber}: ${what} (${events})`);
  steps.push({ what, receipt });
  return receipt;
}

try {
  console.log(`retailer ${retailer.address}\nvendor   ${vendor}${vendorWallet ? "" : " (not a coco user)"}`);
  console.log(`distributor A ${distributorA.address}\ndistributor B ${distributorB.address}\n`);

  const factory = new ethers.ContractFactory(PurchaseOrder.abi, PurchaseOrder.bytecode, retailer);
  const po = await factory.deploy();
  await step("retailer deploys PurchaseOrder", po);
  const created = await step(
    "retailer creates an order, assigning distributor A",
    po.createOrder(vendor, [distributorA.address], "pallets of oat milk", 40n, 1250n),
  );
  const id = iface.parseLog(created.logs[0]).args.id;
  await step("distributor A accepts the order", po.connect(distributorA).acceptOrder(id));
  await step("distributor A marks it shipped", po.connect(distributorA).markShipped(id));
  await step("retailer confirms delivery", po.confirmDelivery(id));

  console.log(`\norder ${id} as each party reads it:`);
  for (const [name, wallet] of parties) {
    try {
      const o = await po.connect(wallet).getOrder(id);
      console.log(`  ${name}: ${o.quantity} x ${o.item} at ${o.unitPrice}, ${statusName[Number(o.status)]}`);
    } catch (err) {
      console.log(`  ${name}: reverted: ${err.reason ?? err.shortMessage}`);
    }
  }

  console.log("\nwhat each party can fetch (eth_getTransactionReceipt, eth_getLogs):");
  const width = Math.max(...steps.map((s) => s.what.length));
  console.log(`  ${"".padEnd(width)}  ${parties.map(([, , short]) => short.padEnd(10)).join("")}`.trimEnd());
  for (const { what, receipt } of steps) {
    const cells = [];
    for (const [, wallet] of parties) {
      cells.push(((await wallet.provider.getTransactionReceipt(receipt.hash)) ? "yes" : "-").padEnd(10));
    }
    console.log(`  ${what.padEnd(width)}  ${cells.join("")}`.trimEnd());
  }
  const logCounts = [];
  for (const [, wallet] of parties) {
    const logs = await wallet.provider.getLogs({ address: await po.getAddress(), fromBlock: 0, toBlock: "latest" });
    logCounts.push(String(logs.length).padEnd(10));
  }
  console.log(`  ${"logs of the contract".padEnd(width)}  ${logCounts.join("")}`.trimEnd());
} finally {
  closeProviders(sb);
}
