// The rules of coco's Ethereum JSON-RPC API that differ from a public chain:
// registered users only, zero gas price, one transaction per block,
// committed before eth_sendRawTransaction returns, no txpool, queries only
// about the caller's own address.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Wallet, keccak256, toQuantity } from "ethers";
import { closeProviders, loadSandbox, tlsProvider, userProvider, userWallet } from "./lib/coco.mjs";

const sb = loadSandbox();
const user0 = userWallet(sb, 0);
const user1 = userWallet(sb, 1);
const provider = user0.provider;

after(() => closeProviders(sb));

// A signed 1-wei transfer from `wallet` to `to`, not sent.
async function signedTransfer(wallet, to, overrides = {}) {
  const tx = await wallet.populateTransaction({ to, value: 1n, ...overrides });
  return wallet.signTransaction(tx);
}

async function eventually(what, fn, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v != null) return v;
    if (Date.now() > deadline) assert.fail(`${what}: still null after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("coco Ethereum API", { timeout: 120_000 }, () => {
  test("chain id and zero gas price", async () => {
    assert.equal(await provider.send("eth_chainId", []), toQuantity(sb.chain_id));
    assert.equal(BigInt(await provider.send("eth_gasPrice", [])), 0n);
    assert.equal(BigInt(await provider.send("eth_maxPriorityFeePerGas", [])), 0n);
    assert.equal((await provider.getBlock("latest")).baseFeePerGas, 0n);
    assert.equal((await provider.getFeeData()).gasPrice, 0n);
  });

  test("users are funded at genesis", async () => {
    assert.ok((await provider.getBalance(user0.address)) > 0n);
    assert.ok((await user1.provider.getBalance(user1.address)) > 0n);
  });

  test("a transaction is committed, in a block of its own, when eth_sendRawTransaction returns", async () => {
    const before = await provider.getBlockNumber();
    const raw = await signedTransfer(user0, user1.address);
    const hash = await provider.send("eth_sendRawTransaction", [raw]);
    assert.equal(hash, keccak256(raw));
    // No polling: the receipt is there already.
    const receipt = await provider.send("eth_getTransactionReceipt", [hash]);
    assert.ok(receipt, "receipt right after eth_sendRawTransaction");
    assert.equal(receipt.status, "0x1");
    assert.equal(receipt.transactionIndex, "0x0");
    assert.ok(Number(receipt.blockNumber) > before);
    assert.ok((await provider.getBlockNumber()) >= Number(receipt.blockNumber));
    const block = await provider.getBlock(Number(receipt.blockNumber));
    assert.deepEqual(block.transactions, [hash]);
  });

  test("every transaction is its own block, at index 0", async () => {
    let last = await provider.getBlockNumber();
    for (let i = 0; i < 3; i++) {
      const tx = await user0.sendTransaction({ to: user1.address, value: 1n });
      const receipt = await tx.wait();
      assert.equal(receipt.status, 1);
      assert.equal(receipt.index, 0);
      assert.ok(receipt.blockNumber > last, "a new block per transaction");
      last = receipt.blockNumber;
      assert.equal((await provider.getTransaction(tx.hash)).index, 0);
      assert.deepEqual((await provider.getBlock(receipt.blockNumber)).transactions, [tx.hash]);
    }
  });

  test("a wrong nonce is rejected at once, and nothing is queued", async () => {
    const nonce = await user0.getNonce();
    assert.ok(nonce > 0, "user0 has sent transactions already");
    const tooLow = await signedTransfer(user0, user1.address, { nonce: nonce - 1, gasLimit: 21_000n });
    await assert.rejects(provider.send("eth_sendRawTransaction", [tooLow]));
    const tooHigh = await signedTransfer(user0, user1.address, { nonce: nonce + 1, gasLimit: 21_000n });
    await assert.rejects(provider.send("eth_sendRawTransaction", [tooHigh]));
    assert.equal(await user0.getNonce(), nonce);

    // Had the nonce+1 transaction been queued, it would run after this one.
    await (await user0.sendTransaction({ to: user1.address, value: 1n, nonce })).wait();
    assert.equal(await user0.getNonce(), nonce + 1);
    assert.equal(await provider.getTransactionReceipt(keccak256(tooHigh)), null);
  });

  test("a transaction from an unregistered address is rejected", async () => {
    const stranger = Wallet.createRandom();
    const raw = await stranger.signTransaction({
      to: user0.address,
      value: 0n,
      nonce: 0,
      gasLimit: 21_000n,
      gasPrice: 0n,
      chainId: sb.chain_id,
      type: 0,
    });
    await assert.rejects(provider.send("eth_sendRawTransaction", [raw]));
    assert.equal(await provider.getTransactionReceipt(keccak256(raw)), null);
  });

  test("eth_call and eth_estimateGas run as the caller; another from is an error", async () => {
    const tx = { to: user1.address, value: 1n };
    const gas = await provider.estimateGas({ ...tx, from: user0.address });
    assert.ok(gas >= 21_000n && gas < 30_000n, `a plain transfer costs about 21000 gas, not ${gas}`);
    assert.equal(await provider.call({ ...tx, from: user0.address }), "0x");
    await assert.rejects(provider.call({ ...tx, from: user1.address }));
    await assert.rejects(provider.estimateGas({ ...tx, from: user1.address }));
  });

  test("balance and nonce only of the caller's own address; no storage reads", async () => {
    await assert.rejects(provider.getBalance(user1.address));
    await assert.rejects(provider.getTransactionCount(user1.address));
    await assert.rejects(provider.getStorage(user0.address, 0));
    assert.ok((await provider.getTransactionCount(user0.address)) > 0);
  });

  test("only users reach /app/eth: a member's TLS certificate is refused", async () => {
    const member = sb.members?.[0];
    assert.ok(member, "sandbox.json lists a member");
    await assert.rejects(tlsProvider(sb, member).getBlockNumber());
  });

  test("every node serves the app; a backup takes a transaction", async () => {
    const last = sb.nodes.length - 1;
    const viaLast = userWallet(sb, 1, last);
    const tx = await viaLast.sendTransaction({ to: user0.address, value: 1n });
    const receipt = await tx.wait();
    assert.equal(receipt.status, 1);
    for (let n = 0; n < sb.nodes.length; n++) {
      const r = await eventually(`receipt on node${n}`, () => userProvider(sb, 1, n).getTransactionReceipt(tx.hash));
      assert.equal(r.blockHash, receipt.blockHash, `node${n}`);
    }
  });
});
