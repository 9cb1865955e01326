// validate: is the proposal well-formed? It never throws for a bad
// proposal; it says why in description.
function invalid(description) {
  return { valid: false, description: description };
}

export function validate(input) {
  let proposal;
  try {
    proposal = JSON.parse(input);
  } catch (e) {
    return invalid("proposal is not JSON: " + e.message);
  }
  if (!isObject(proposal)) return invalid("proposal must be a JSON object");
  for (const k of Object.keys(proposal)) {
    if (k !== "actions") return invalid(`unknown proposal field "${k}"`);
  }
  const list = proposal.actions;
  if (!Array.isArray(list) || list.length === 0) {
    return invalid("proposal.actions must be a non-empty array");
  }
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    if (!isObject(a) || typeof a.name !== "string") {
      return invalid(`actions[${i}] must be an object with a string name`);
    }
    for (const k of Object.keys(a)) {
      if (k !== "name" && k !== "args") return invalid(`actions[${i}]: unknown field "${k}"`);
    }
    const action = actions.get(a.name);
    if (action === undefined) return invalid(`actions[${i}]: unknown action "${a.name}"`);
    try {
      checkArgs(a.args, action.args);
    } catch (e) {
      if (e instanceof ArgError) return invalid(`actions[${i}] (${a.name}): ${e.message}`);
      throw e;
    }
  }
  return { valid: true, description: "OK" };
}
