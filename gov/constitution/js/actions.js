// The default actions: for each, the arguments it takes (checked by
// validate, and again by apply, since the constitution may have changed
// since the proposal was validated) and what it does to the kv.
//
// Argument types: "cert" (PEM certificate bundle), "pubkey" (PEM public
// key), "id" (64 lowercase hex digits: a member, user or node id), "json"
// (any JSON value, null included), "threshold" (integer 1..255),
// "measurement" (lowercase hex, 16 to 64 bytes), "constitution" (source
// that compiles and exports validate, resolve and apply). A trailing "?"
// makes an argument optional. Unknown arguments are refused, so a typo in
// an argument name fails validation instead of being ignored.

class ArgError extends Error {}

const ID_RE = /^[0-9a-f]{64}$/;
const MEASUREMENT_RE = /^(?:[0-9a-f]{2}){16,64}$/;

const argCheckers = {
  cert: (v) => {
    if (typeof v !== "string" || !ccf.crypto.isValidX509CertBundle(v)) {
      return "must be a PEM X.509 certificate";
    }
  },
  pubkey: (v) => {
    if (typeof v !== "string" || !ccf.crypto.isValidPublicKeyPem(v)) {
      return "must be a PEM public key";
    }
  },
  id: (v) => {
    if (typeof v !== "string" || !ID_RE.test(v)) {
      return "must be 64 lowercase hex digits";
    }
  },
  json: (v) => {},
  threshold: (v) => {
    if (!Number.isInteger(v) || v < 1 || v > 255) {
      return "must be an integer from 1 to 255";
    }
  },
  measurement: (v) => {
    if (typeof v !== "string" || !MEASUREMENT_RE.test(v)) {
      return "must be 32 to 128 lowercase hex digits";
    }
  },
  constitution: (v) => {
    if (typeof v !== "string" || v.length === 0) {
      return "must be a non-empty string";
    }
    const err = ccf.checkConstitution(v);
    if (err !== "") {
      return "does not compile: " + err;
    }
  },
};

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// checkArgs throws ArgError unless args matches spec ({name: "type[?]"}).
// An action without arguments accepts a missing args or {}.
function checkArgs(args, spec) {
  if (args === undefined && Object.keys(spec).every((k) => spec[k].endsWith("?"))) {
    return;
  }
  if (!isObject(args)) {
    throw new ArgError("args must be an object");
  }
  for (const k of Object.keys(args)) {
    // Own properties only: `k in spec` would let "constructor",
    // "toString" or "__proto__" through from Object.prototype.
    if (!Object.prototype.hasOwnProperty.call(spec, k)) {
      throw new ArgError(`unknown argument "${k}"`);
    }
  }
  for (const [k, t] of Object.entries(spec)) {
    const optional = t.endsWith("?");
    const type = optional ? t.slice(0, -1) : t;
    const v = args[k];
    if (v === undefined || (optional && v === null)) {
      if (optional) continue;
      throw new ArgError(`missing argument "${k}"`);
    }
    const problem = argCheckers[type](v);
    if (problem !== undefined) {
      throw new ArgError(`argument "${k}" ${problem}`);
    }
  }
}

function getJSON(map, key) {
  const v = ccf.kv[map].get(key);
  return v === undefined ? undefined : JSON.parse(v);
}

function setJSON(map, key, value) {
  ccf.kv[map].set(key, JSON.stringify(value));
}

function countActiveMembers() {
  let n = 0;
  ccf.kv[MAPS.membersInfo].forEach((v) => {
    if (JSON.parse(v).status === "Active") n++;
  });
  return n;
}

// countRecoveryMembers counts the Active members holding an encryption key:
// those that can take part in recovery, as CCF counts them.
function countRecoveryMembers() {
  let n = 0;
  ccf.kv[MAPS.membersEncryptionPublicKeys].forEach((_, id) => {
    const info = getJSON(MAPS.membersInfo, id);
    if (info !== undefined && info.status === "Active") n++;
  });
  return n;
}

const actions = new Map([
  ["set_member", {
    args: { cert: "cert", encryption_pub_key: "pubkey?", member_data: "json?" },
    // As CCF's: setting an existing member changes nothing (use
    // set_member_data), so re-proposing a member cannot demote an Active
    // member back to Accepted.
    apply(args) {
      const id = ccf.pemToId(args.cert);
      if (ccf.kv[MAPS.membersCerts].has(id)) return;
      ccf.kv[MAPS.membersCerts].set(id, args.cert);
      const info = { status: "Accepted" };
      if (args.member_data !== undefined && args.member_data !== null) info.member_data = args.member_data;
      setJSON(MAPS.membersInfo, id, info);
      if (typeof args.encryption_pub_key === "string") {
        ccf.kv[MAPS.membersEncryptionPublicKeys].set(id, args.encryption_pub_key);
      }
    },
  }],
  ["remove_member", {
    args: { member_id: "id" },
    apply(args) {
      const info = getJSON(MAPS.membersInfo, args.member_id);
      if (info === undefined) throw new Error(`member ${args.member_id} does not exist`);
      // Removing the last Active member would leave nobody able to vote,
      // and governance could never change anything again.
      if (info.status === "Active" && countActiveMembers() <= 1) {
        throw new Error(`member ${args.member_id} is the last active member`);
      }
      // As CCF's: removing an active recovery member must leave at least
      // recovery_threshold of them, or the service could not be recovered.
      if (info.status === "Active" && ccf.kv[MAPS.membersEncryptionPublicKeys].has(args.member_id)) {
        const config = getJSON(MAPS.serviceConfig, SERVICE_KEY) || {};
        const threshold = config.recovery_threshold || 0;
        const left = countRecoveryMembers() - 1;
        if (left < threshold) {
          throw new Error(`removing member ${args.member_id} would leave ${left} recovery members, fewer than the recovery threshold ${threshold}`);
        }
      }
      ccf.kv[MAPS.membersCerts].delete(args.member_id);
      ccf.kv[MAPS.membersInfo].delete(args.member_id);
      ccf.kv[MAPS.membersEncryptionPublicKeys].delete(args.member_id);
    },
  }],
  ["set_member_data", {
    args: { member_id: "id", member_data: "json" },
    apply(args) {
      const info = getJSON(MAPS.membersInfo, args.member_id);
      if (info === undefined) throw new Error(`member ${args.member_id} does not exist`);
      if (args.member_data === null) delete info.member_data;
      else info.member_data = args.member_data;
      setJSON(MAPS.membersInfo, args.member_id, info);
    },
  }],
  ["set_user", {
    args: { cert: "cert", user_data: "json?" },
    apply(args) {
      const id = ccf.pemToId(args.cert);
      ccf.kv[MAPS.usersCerts].set(id, args.cert);
      if (args.user_data !== undefined && args.user_data !== null) {
        setJSON(MAPS.usersInfo, id, { user_data: args.user_data });
      } else {
        ccf.kv[MAPS.usersInfo].delete(id);
      }
    },
  }],
  ["remove_user", {
    args: { user_id: "id" },
    apply(args) {
      if (!ccf.kv[MAPS.usersCerts].has(args.user_id)) throw new Error(`user ${args.user_id} does not exist`);
      ccf.kv[MAPS.usersCerts].delete(args.user_id);
      ccf.kv[MAPS.usersInfo].delete(args.user_id);
    },
  }],
  ["set_user_data", {
    args: { user_id: "id", user_data: "json" },
    apply(args) {
      if (!ccf.kv[MAPS.usersCerts].has(args.user_id)) throw new Error(`user ${args.user_id} does not exist`);
      if (args.user_data === null) ccf.kv[MAPS.usersInfo].delete(args.user_id);
      else setJSON(MAPS.usersInfo, args.user_id, { user_data: args.user_data });
    },
  }],
  ["transition_service_to_open", {
    args: {},
    apply() {
      const info = getJSON(MAPS.serviceInfo, SERVICE_KEY);
      if (info === undefined) throw new Error("the service has no service info yet");
      if (info.status !== "Opening" && info.status !== "Recovering") {
        throw new Error(`cannot open the service from status ${info.status}`);
      }
      info.status = "Open"; // every other field (cert, recovery_count, ...) is kept
      setJSON(MAPS.serviceInfo, SERVICE_KEY, info);
    },
  }],
  ["transition_node_to_trusted", {
    args: { node_id: "id" },
    apply(args) {
      const info = getJSON(MAPS.nodesInfo, args.node_id);
      if (info === undefined) throw new Error(`node ${args.node_id} does not exist`);
      if (info.status === "Trusted") return;
      if (info.status !== "Pending") throw new Error(`node ${args.node_id} is ${info.status}, not Pending`);
      info.status = "Trusted";
      setJSON(MAPS.nodesInfo, args.node_id, info);
    },
  }],
  ["remove_node", {
    args: { node_id: "id" },
    // As CCF's: a Pending node never joined and is deleted; a Trusted node
    // is marked Retired, not deleted, so consensus sees it leave the
    // configuration and the ledger keeps who signed what.
    apply(args) {
      const info = getJSON(MAPS.nodesInfo, args.node_id);
      if (info === undefined) throw new Error(`node ${args.node_id} does not exist`);
      if (info.status === "Pending") {
        ccf.kv[MAPS.nodesInfo].delete(args.node_id);
      } else if (info.status !== "Retired") {
        info.status = "Retired";
        setJSON(MAPS.nodesInfo, args.node_id, info);
      }
    },
  }],
  ["set_constitution", {
    args: { constitution: "constitution" },
    apply(args) {
      ccf.kv[MAPS.constitution].set(CONSTITUTION_KEY, args.constitution);
    },
  }],
  ["set_recovery_threshold", {
    args: { recovery_threshold: "threshold" },
    apply(args) {
      // As CCF's: a threshold above the number of Active members holding
      // an encryption key (recovery members) would make recovery impossible.
      const recoveryMembers = countRecoveryMembers();
      if (args.recovery_threshold > recoveryMembers) {
        throw new Error(`recovery threshold ${args.recovery_threshold} is above the ${recoveryMembers} recovery members`);
      }
      const config = getJSON(MAPS.serviceConfig, SERVICE_KEY) || {};
      config.recovery_threshold = args.recovery_threshold;
      setJSON(MAPS.serviceConfig, SERVICE_KEY, config);
    },
  }],
  ["set_node_measurement", {
    args: { measurement: "measurement" },
    apply(args) {
      ccf.kv[MAPS.nodesMeasurements].set(args.measurement, MEASUREMENT_ALLOWED);
    },
  }],
  ["remove_node_measurement", {
    args: { measurement: "measurement" },
    apply(args) {
      if (!ccf.kv[MAPS.nodesMeasurements].delete(args.measurement)) {
        throw new Error(`measurement ${args.measurement} is not allowed now`);
      }
    },
  }],
]);
