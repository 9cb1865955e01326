// apply: perform each action in order. A throw fails the whole proposal
// and the runtime drops every write it made.
export function apply(proposal, proposalId) {
  const p = JSON.parse(proposal);
  for (const a of p.actions) {
    const action = actions.get(a.name);
    if (action === undefined) throw new Error(`unknown action "${a.name}"`);
    checkArgs(a.args, action.args);
    action.apply(a.args === undefined ? {} : a.args, proposalId);
  }
}
