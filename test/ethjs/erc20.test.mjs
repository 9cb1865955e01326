// An ERC-20 token deployed and used through ethers v6 against coco's
// Ethereum app. Nothing here depends on coco's visibility rule: user0 and
// user1 are the senders, recipients or indexed topics of every transaction.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Contract, ContractFactory, Interface } from "ethers";
import { closeProviders, compileFiles, loadSandbox, userWallet } from "./lib/coco.mjs";

const sb = loadSandbox();
const { Token } = compileFiles(fileURLToPath(new URL("./contracts/Token.sol", import.meta.url)));
const iface = new Interface(Token.abi);
const SUPPLY = 1_000_000n * 10n ** 18n;

describe("ERC-20 token", () => {
  const owner = userWallet(sb, 0);
  const alice = userWallet(sb, 1);
  const provider = owner.provider;
  let token; // connected to owner
  let deployReceipt;
  let transfer; // { tx, receipt } of owner -> alice

  before(async () => {
    const factory = new ContractFactory(Token.abi, Token.bytecode, owner);
    token = await factory.deploy("Coco Token", "COCO", SUPPLY);
    deployReceipt = await token.deploymentTransaction().wait();
  });

  after(() => closeProviders(sb));

  test("deploys with the whole supply on the deployer", async () => {
    assert.equal(deployReceipt.status, 1);
    assert.equal(deployReceipt.contractAddress, await token.getAddress());
    assert.notEqual(await provider.getCode(deployReceipt.contractAddress), "0x");
    assert.equal(await token.name(), "Coco Token");
    assert.equal(await token.symbol(), "COCO");
    assert.equal(await token.decimals(), 18n);
    assert.equal(await token.totalSupply(), SUPPLY);
    assert.equal(await token.balanceOf(owner.address), SUPPLY);
    assert.equal(await token.balanceOf(alice.address), 0n);
  });

  test("transfer: receipt, decoded Transfer event, balances", async () => {
    const before = await provider.getBlockNumber();
    const tx = await token.transfer(alice.address, 250n);
    const receipt = await tx.wait();
    transfer = { tx, receipt };

    assert.equal(receipt.status, 1);
    assert.equal(receipt.hash, tx.hash);
    assert.equal(receipt.from, owner.address);
    assert.equal(receipt.to, await token.getAddress());
    assert.ok(receipt.blockNumber > before, "the transfer's block is a new block");
    assert.ok((await provider.getBlockNumber()) >= receipt.blockNumber);
    assert.ok(receipt.gasUsed > 21000n, "gas is metered");

    assert.equal(receipt.logs.length, 1);
    const ev = iface.parseLog(receipt.logs[0]);
    assert.equal(ev.name, "Transfer");
    assert.equal(ev.args.from, owner.address);
    assert.equal(ev.args.to, alice.address);
    assert.equal(ev.args.value, 250n);

    assert.equal(await token.balanceOf(owner.address), SUPPLY - 250n);
    assert.equal(await token.balanceOf(alice.address), 250n);
  });

  test("getTransaction and getTransactionReceipt by hash match the transfer", async () => {
    const { tx, receipt } = transfer;
    const got = await provider.getTransaction(tx.hash);
    assert.ok(got, "getTransaction found the transfer");
    assert.equal(got.hash, tx.hash);
    assert.equal(got.from, owner.address);
    assert.equal(got.to, await token.getAddress());
    assert.equal(got.nonce, tx.nonce);
    assert.equal(got.data, tx.data);
    assert.equal(got.value, 0n);
    assert.equal(got.chainId, BigInt(sb.chain_id));
    assert.equal(got.blockNumber, receipt.blockNumber);
    assert.equal(got.blockHash, receipt.blockHash);

    const again = await provider.getTransactionReceipt(tx.hash);
    assert.ok(again, "getTransactionReceipt found the transfer");
    assert.equal(again.hash, receipt.hash);
    assert.equal(again.blockNumber, receipt.blockNumber);
    assert.equal(again.blockHash, receipt.blockHash);
    assert.equal(again.status, 1);
    assert.equal(again.gasUsed, receipt.gasUsed);
    assert.deepEqual(again.logs.map((l) => l.topics), receipt.logs.map((l) => l.topics));

    // The recipient of the tokens sees the transaction too (it is an
    // indexed topic of its Transfer log).
    assert.equal((await alice.provider.getTransactionReceipt(tx.hash))?.hash, tx.hash);
  });

  test("getLogs by token address and Transfer topic returns the transfer", async () => {
    const { tx, receipt } = transfer;
    const logs = await provider.getLogs({
      address: await token.getAddress(),
      topics: [iface.getEvent("Transfer").topicHash],
      fromBlock: 0,
      toBlock: "latest",
    });
    const mine = logs.filter((l) => l.transactionHash === tx.hash);
    assert.equal(mine.length, 1);
    assert.equal(mine[0].blockNumber, receipt.blockNumber);
    const ev = iface.parseLog(mine[0]);
    assert.deepEqual([ev.args.from, ev.args.to, ev.args.value], [owner.address, alice.address, 250n]);
    // The mint in the constructor is a Transfer from address(0).
    assert.ok(logs.some((l) => l.transactionHash === deployReceipt.hash));

    // Filtering on the indexed `to` finds it as well.
    const toAlice = await token.queryFilter(token.filters.Transfer(null, alice.address), receipt.blockNumber);
    assert.ok(toAlice.some((l) => l.transactionHash === tx.hash));
  });

  test("approve and transferFrom", async () => {
    const approveReceipt = await (await token.approve(alice.address, 100n)).wait();
    assert.equal(approveReceipt.status, 1);
    const approval = iface.parseLog(approveReceipt.logs[0]);
    assert.equal(approval.name, "Approval");
    assert.deepEqual([approval.args.owner, approval.args.spender, approval.args.value], [owner.address, alice.address, 100n]);
    assert.equal(await token.allowance(owner.address, alice.address), 100n);

    const asAlice = token.connect(alice);
    const receipt = await (await asAlice.transferFrom(owner.address, alice.address, 60n)).wait();
    assert.equal(receipt.status, 1);
    assert.equal(receipt.from, alice.address);
    assert.equal(await token.allowance(owner.address, alice.address), 40n);
    assert.equal(await token.balanceOf(alice.address), 310n);
    assert.equal(await token.balanceOf(owner.address), SUPPLY - 310n);

    await assert.rejects(asAlice.transferFrom(owner.address, alice.address, 41n), {
      code: "CALL_EXCEPTION",
      reason: "ERC20: insufficient allowance",
    });
  });

  test("a transfer beyond the balance reverts with its reason", async () => {
    const asAlice = token.connect(alice);
    const balance = await token.balanceOf(alice.address);
    const nonce = await alice.getNonce();
    // Through estimateGas (what a send does first) and through eth_call.
    await assert.rejects(asAlice.transfer(owner.address, balance + 1n), {
      code: "CALL_EXCEPTION",
      reason: "ERC20: insufficient balance",
    });
    await assert.rejects(asAlice.transfer.staticCall(owner.address, balance + 1n), {
      code: "CALL_EXCEPTION",
      reason: "ERC20: insufficient balance",
    });
    assert.equal(await alice.getNonce(), nonce, "nothing was sent");
    assert.equal(await token.balanceOf(alice.address), balance);
  });

  test("a transaction sent anyway with a fixed gas limit reverts on chain", async () => {
    const asAlice = token.connect(alice);
    const balance = await token.balanceOf(alice.address);
    // A gas limit skips estimateGas: the transaction is committed and fails.
    const tx = await asAlice.transfer(owner.address, balance + 1n, { gasLimit: 100_000n });
    await assert.rejects(tx.wait(), (err) => {
      assert.equal(err.code, "CALL_EXCEPTION");
      assert.equal(err.receipt.status, 0);
      assert.equal(err.receipt.logs.length, 0);
      return true;
    });
    assert.equal(await token.balanceOf(alice.address), balance);
  });

  test("estimateGas", async () => {
    const gas = await token.transfer.estimateGas(alice.address, 1n);
    assert.ok(gas > 21000n && gas < 200_000n, `estimate ${gas}`);
    const viaProvider = await provider.estimateGas({
      from: owner.address,
      to: await token.getAddress(),
      data: iface.encodeFunctionData("transfer", [alice.address, 1n]),
    });
    assert.equal(viaProvider, gas);
  });

  test("the block number increases with each transaction", async () => {
    const start = await provider.getBlockNumber();
    const r1 = await (await token.transfer(alice.address, 1n)).wait();
    const r2 = await (await token.transfer(alice.address, 1n)).wait();
    assert.ok(r1.blockNumber > start);
    assert.ok(r2.blockNumber > r1.blockNumber);
    assert.ok((await provider.getBlockNumber()) >= r2.blockNumber);
    const block = await provider.getBlock(r2.blockNumber);
    assert.equal(block.hash, r2.blockHash);
    assert.ok(block.transactions.includes(r2.hash));
  });

  test("a Contract bound to a provider only also reads (eth_call without from)", async () => {
    const readOnly = new Contract(await token.getAddress(), Token.abi, alice.provider);
    assert.equal(await readOnly.totalSupply(), SUPPLY);
  });
});
