// Helpers for talking to coco's Ethereum app (POST https://<node>/app/eth)
// with ethers v6, described by the sandbox.json that `coco sandbox` writes.
//
// Run the test files one at a time (`npm test` does): they send from the
// same users, and coco rejects at once a nonce that another process has
// just used (there is no txpool).

import { readFileSync } from "node:fs";
import https from "node:https";
import { basename } from "node:path";
import { ethers, FetchRequest, JsonRpcProvider, Network, Wallet } from "ethers";
import solc from "solc";

// For scripts outside this package (examples/purchase-order/demo.mjs) that
// cannot resolve "ethers" themselves.
export { ethers };

/**
 * Reads the sandbox description named by $COCO_SANDBOX (or `path`).
 * Throws, rather than skipping, when it is not set: these tests exist to
 * run against a coco service.
 */
export function loadSandbox(path = process.env.COCO_SANDBOX) {
  if (!path) {
    throw new Error(
      "COCO_SANDBOX is not set: set it to the absolute path of the sandbox.json " +
        "written by `coco sandbox --dir DIR` (e.g. COCO_SANDBOX=/tmp/sb/sandbox.json node --test)",
    );
  }
  let sb;
  try {
    sb = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`COCO_SANDBOX=${path}: cannot read the sandbox description: ${err.message}`);
  }
  for (const key of ["service_cert", "chain_id", "nodes", "users"]) {
    if (sb[key] == null) throw new Error(`COCO_SANDBOX=${path}: no "${key}"`);
  }
  return sb;
}

// One provider (and TLS agent) per sandbox, user and node, shared by callers.
const providers = new WeakMap(); // sandbox object -> Map("cert|node" -> {provider, agent})

function user(sb, i) {
  const u = sb.users[i];
  if (!u) throw new Error(`sandbox has ${sb.users.length} user(s), no user${i}`);
  return u;
}

/**
 * An ethers JsonRpcProvider for user `i` on node `nodeIndex`: HTTPS that
 * trusts only the service certificate and presents the user's TLS client
 * certificate (coco admits only registered users to /app/eth).
 */
export function userProvider(sb, i, nodeIndex = 0) {
  return tlsProvider(sb, user(sb, i), nodeIndex);
}

/**
 * Like userProvider, for any TLS identity `{ cert, key }` (PEM paths), e.g.
 * a member's, which coco must refuse at /app/eth.
 */
export function tlsProvider(sb, { cert, key }, nodeIndex = 0) {
  let perSandbox = providers.get(sb);
  if (!perSandbox) providers.set(sb, (perSandbox = new Map()));
  const cacheKey = `${cert}|${nodeIndex}`;
  const cached = perSandbox.get(cacheKey);
  if (cached) return cached.provider;

  const node = sb.nodes[nodeIndex];
  if (!node) throw new Error(`sandbox has ${sb.nodes.length} node(s), no node${nodeIndex}`);
  const agent = new https.Agent({
    ca: readFileSync(sb.service_cert), // the only trusted CA
    cert: readFileSync(cert),
    key: readFileSync(key),
    keepAlive: true,
  });
  const request = new FetchRequest(`https://${node.rpc_address}/app/eth`);
  // ethers' own node:https fetcher, given our agent (ca/cert/key).
  request.getUrlFunc = FetchRequest.createGetUrlFunc({ agent });
  request.timeout = 30_000; // a request held open (e.g. a queued transaction) fails, not hangs

  const network = new Network("coco", BigInt(sb.chain_id));
  const provider = new JsonRpcProvider(request, network, {
    staticNetwork: network, // no eth_chainId probing
    pollingInterval: 100,
    // coco commits a transaction before eth_sendRawTransaction returns, and
    // rejects a wrong nonce at once: never reuse a cached eth_blockNumber or
    // eth_getTransactionCount (ethers caches identical calls for 250 ms).
    cacheTimeout: -1,
    // One JSON-RPC request per HTTP request (no JSON arrays).
    batchMaxCount: 1,
  });
  perSandbox.set(cacheKey, { provider, agent });
  return provider;
}

/** The user's Ethereum address as written in sandbox.json. */
export function userAddress(sb, i) {
  return user(sb, i).eth_address;
}

/** A Wallet for user `i` (key from its `eth_key` file) on node `nodeIndex`. */
export function userWallet(sb, i, nodeIndex = 0) {
  const hexKey = readFileSync(user(sb, i).eth_key, "utf8").trim();
  return new Wallet(hexKey, userProvider(sb, i, nodeIndex));
}

/** Destroys the providers and TLS agents made for `sb`. */
export function closeProviders(sb) {
  const perSandbox = providers.get(sb);
  if (!perSandbox) return;
  for (const { provider, agent } of perSandbox.values()) {
    provider.destroy();
    agent.destroy();
  }
  providers.delete(sb);
}

/**
 * Compiles Solidity with solc-js (standard JSON). `sources` maps a file
 * name to its source text. Returns { ContractName: { abi, bytecode } };
 * throws on any compile error.
 *
 * Unless `evmVersion` is given, none is set: solc 0.8.37's default target
 * is "osaka", the fork coco's EVM runs. (An older one is for chains that
 * coco is benchmarked against and that know no newer fork, e.g. ganache's
 * "shanghai".)
 */
export function compile(sources, evmVersion) {
  const settings = {
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  };
  if (evmVersion) settings.evmVersion = evmVersion;
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(Object.entries(sources).map(([name, content]) => [name, { content }])),
    settings,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) {
    throw new Error(`solc: ${errors.map((e) => e.formattedMessage ?? e.message).join("\n")}`);
  }
  const contracts = {};
  for (const [file, byName] of Object.entries(output.contracts ?? {})) {
    for (const [name, c] of Object.entries(byName)) {
      if (contracts[name]) throw new Error(`solc: contract ${name} defined twice (${file})`);
      contracts[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
    }
  }
  return contracts;
}

/** Reads Solidity files (by path) and compiles them; see compile(). */
export function compileFiles(...paths) {
  return compileFilesFor(undefined, ...paths);
}

/** Like compileFiles, for the given EVM version (undefined: solc's default). */
export function compileFilesFor(evmVersion, ...paths) {
  return compile(Object.fromEntries(paths.map((p) => [basename(p), readFileSync(p, "utf8")])), evmVersion);
}
