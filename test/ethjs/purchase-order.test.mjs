// The purchase-order example (examples/purchase-order) against coco.
//
// Parties: the retailer is user0, the assigned distributor is user1 and an
// unassigned distributor is user2 (the sandbox's 3 default users). The
// vendor is a fresh address that is not a coco user, and so is a second,
// "late" distributor that the retailer assigns by a transaction of its own.
//
// "purchase order workflow" checks the contract (its access control holds on
// any EVM chain); "coco visibility rule" checks what each user can see of
// the transactions, receipts, logs and blocks, which only coco enforces.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ContractFactory, Interface, Wallet, toBeHex, zeroPadValue } from "ethers";
import { closeProviders, compileFiles, loadSandbox, userWallet } from "./lib/coco.mjs";

const sb = loadSandbox();
assert.ok(sb.users.length >= 3, "the purchase-order test needs 3 users (coco sandbox --users 3)");
const source = fileURLToPath(new URL("../../examples/purchase-order/PurchaseOrder.sol", import.meta.url));
const { PurchaseOrder } = compileFiles(source);
const iface = new Interface(PurchaseOrder.abi);
const Status = { Created: 1n, Accepted: 2n, Shipped: 3n, Delivered: 4n };
const NOT_A_PARTY = { code: "CALL_EXCEPTION", reason: "PO: not a party to this order" };

const retailer = userWallet(sb, 0);
const distributor = userWallet(sb, 1); // assigned when the order is created
const outsider = userWallet(sb, 2); // a distributor never assigned to the order
const vendor = Wallet.createRandom().address;
const lateDistributor = Wallet.createRandom().address;

let po; // the contract, connected to the retailer
let orderId;
const receipts = {}; // deploy, create, assign, accept, ship, deliver

async function send(txPromise) {
  const receipt = await (await txPromise).wait();
  assert.equal(receipt.status, 1);
  return receipt;
}

function events(receipt) {
  return receipt.logs.map((l) => iface.parseLog(l));
}

before(async () => {
  po = await new ContractFactory(PurchaseOrder.abi, PurchaseOrder.bytecode, retailer).deploy();
  receipts.deploy = await po.deploymentTransaction().wait();
  receipts.create = await send(po.createOrder(vendor, [distributor.address], "pallets of oat milk", 40n, 1250n));
  orderId = events(receipts.create)[0].args.id;
  receipts.assign = await send(po.assignDistributor(orderId, lateDistributor));
});

after(() => closeProviders(sb));

describe("purchase order workflow", () => {
  test("the events name the parties as indexed topics", () => {
    const [created, assigned] = events(receipts.create);
    assert.equal(created.name, "OrderCreated");
    assert.deepEqual([...created.args], [orderId, retailer.address, vendor]);
    assert.equal(assigned.name, "DistributorAssigned");
    assert.deepEqual([...assigned.args], [orderId, distributor.address]);
    assert.equal(receipts.create.logs[1].topics[2], zeroPadValue(distributor.address.toLowerCase(), 32));
    const [late] = events(receipts.assign);
    assert.deepEqual([late.name, ...late.args], ["DistributorAssigned", orderId, lateDistributor]);
  });

  test("the retailer and the assigned distributor read the order", async () => {
    for (const who of [retailer, distributor]) {
      const order = await po.connect(who).getOrder(orderId);
      assert.equal(order.retailer, retailer.address);
      assert.equal(order.vendor, vendor);
      assert.equal(order.status, Status.Created);
      assert.equal(order.item, "pallets of oat milk");
      assert.equal(order.quantity, 40n);
      assert.equal(order.unitPrice, 1250n);
      assert.equal(await po.connect(who).isAssigned(orderId, distributor.address), true);
      assert.equal(await po.connect(who).isAssigned(orderId, lateDistributor), true);
      assert.equal(await po.connect(who).isAssigned(orderId, outsider.address), false);
    }
  });

  test("the unassigned distributor cannot read the order, nor tell that it exists", async () => {
    const asOutsider = po.connect(outsider);
    await assert.rejects(asOutsider.getOrder(orderId), NOT_A_PARTY);
    await assert.rejects(asOutsider.isAssigned(orderId, outsider.address), NOT_A_PARTY);
    await assert.rejects(asOutsider.getOrder(orderId + 1000n), NOT_A_PARTY);
  });

  test("only the retailer assigns distributors", async () => {
    const reason = "PO: only the retailer assigns distributors";
    await assert.rejects(po.connect(outsider).assignDistributor(orderId, outsider.address), { reason });
    await assert.rejects(po.connect(distributor).assignDistributor(orderId, outsider.address), { reason });
    await assert.rejects(po.assignDistributor(orderId, distributor.address), {
      reason: "PO: distributor already assigned",
    });
  });

  test("an assigned distributor accepts the order and becomes its carrier", async () => {
    await assert.rejects(po.connect(outsider).acceptOrder(orderId), { reason: "PO: not an assigned distributor" });
    await assert.rejects(po.connect(distributor).markShipped(orderId), { reason: "PO: not the carrier" });
    receipts.accept = await send(po.connect(distributor).acceptOrder(orderId));
    const [accepted] = events(receipts.accept);
    assert.deepEqual([accepted.name, ...accepted.args], ["OrderAccepted", orderId, retailer.address, vendor]);
    const order = await po.getOrder(orderId);
    assert.equal(order.status, Status.Accepted);
    assert.equal(order.carrier, distributor.address);
  });

  test("the carrier ships and the retailer confirms delivery", async () => {
    await assert.rejects(po.markShipped(orderId), { reason: "PO: not the carrier" });
    receipts.ship = await send(po.connect(distributor).markShipped(orderId));
    assert.equal(events(receipts.ship)[0].name, "OrderShipped");

    await assert.rejects(po.connect(distributor).confirmDelivery(orderId), {
      reason: "PO: only the retailer confirms delivery",
    });
    receipts.deliver = await send(po.confirmDelivery(orderId));
    const [delivered] = events(receipts.deliver);
    assert.deepEqual([delivered.name, ...delivered.args], ["OrderDelivered", orderId, vendor, distributor.address]);

    assert.equal((await po.connect(distributor).getOrder(orderId)).status, Status.Delivered);
    await assert.rejects(po.connect(outsider).getOrder(orderId), NOT_A_PARTY);
  });
});

// A transaction, its receipt and its logs are visible only to its sender,
// its recipient and the addresses among the indexed topics of its logs.
describe("coco visibility rule", () => {
  const all = ["deploy", "create", "assign", "accept", "ship", "deliver"];
  // What the assigned distributor sends or is named in. It is not named in
  // the deployment nor in the late distributor's assignment.
  const seenByDistributor = ["create", "accept", "ship", "deliver"];

  function hashes(names) {
    return names.map((n) => {
      assert.ok(receipts[n], `no ${n} transaction (did the workflow tests pass?)`);
      return receipts[n].hash;
    });
  }

  async function contractLogs(wallet) {
    return wallet.provider.getLogs({ address: await po.getAddress(), fromBlock: 0, toBlock: "latest" });
  }

  test("the unassigned distributor gets null for every transaction and receipt", async () => {
    for (const [i, hash] of hashes(all).entries()) {
      assert.equal(await outsider.provider.getTransaction(hash), null, `${all[i]} transaction`);
      assert.equal(await outsider.provider.getTransactionReceipt(hash), null, `${all[i]} receipt`);
    }
  });

  test("the unassigned distributor gets none of the order's logs", async () => {
    assert.deepEqual(await contractLogs(outsider), []);
    const byOrder = await outsider.provider.getLogs({
      topics: [null, toBeHex(orderId, 32)],
      fromBlock: 0,
      toBlock: "latest",
    });
    assert.deepEqual(byOrder.filter((l) => hashes(all).includes(l.transactionHash)), []);
  });

  test("the unassigned distributor sees the order's blocks without their transactions", async () => {
    for (const name of all) {
      const { blockNumber } = receipts[name];
      const full = await outsider.provider.getBlock(blockNumber, true);
      assert.ok(full, `block ${blockNumber} (${name})`);
      assert.equal(full.number, blockNumber);
      assert.deepEqual(full.transactions, [], `block ${blockNumber} (${name})`);
      assert.deepEqual(full.prefetchedTransactions, []);
      const hashesOnly = await outsider.provider.getBlock(blockNumber, false);
      assert.deepEqual(hashesOnly.transactions, []);
    }
  });

  test("the retailer sees every transaction, receipt, log and block", async () => {
    for (const name of all) {
      const { hash, blockNumber } = receipts[name];
      assert.equal((await retailer.provider.getTransaction(hash))?.hash, hash, name);
      assert.equal((await retailer.provider.getTransactionReceipt(hash))?.hash, hash, name);
      const block = await retailer.provider.getBlock(blockNumber, true);
      assert.deepEqual(block.transactions, [hash], `block of ${name}`);
      assert.equal(block.prefetchedTransactions[0].from, receipts[name].from);
    }
    const logs = await contractLogs(retailer);
    const want = all.flatMap((n) => receipts[n].logs.map((l) => `${l.transactionHash}/${l.index}`));
    assert.deepEqual(logs.map((l) => `${l.transactionHash}/${l.index}`), want);
  });

  test("the assigned distributor sees exactly the transactions that name it", async () => {
    for (const name of all) {
      const { hash, blockNumber } = receipts[name];
      const visible = seenByDistributor.includes(name);
      const tx = await distributor.provider.getTransaction(hash);
      const receipt = await distributor.provider.getTransactionReceipt(hash);
      const block = await distributor.provider.getBlock(blockNumber, true);
      if (visible) {
        assert.equal(tx?.hash, hash, name);
        assert.equal(receipt?.hash, hash, name);
        assert.deepEqual(receipt.logs.map((l) => l.topics), receipts[name].logs.map((l) => l.topics), name);
        assert.deepEqual(block.transactions, [hash], `block of ${name}`);
      } else {
        assert.equal(tx, null, name);
        assert.equal(receipt, null, name);
        assert.deepEqual(block.transactions, [], `block of ${name}`);
      }
    }
    const logs = await contractLogs(distributor);
    const want = seenByDistributor.flatMap((n) => receipts[n].logs.map((l) => `${l.transactionHash}/${l.index}`));
    assert.deepEqual(logs.map((l) => `${l.transactionHash}/${l.index}`), want);
  });
});
