// resolve: Accepted once strictly more than half of the Active members
// voted yes, Rejected once strictly more than half voted no, Open until
// then. Votes of members that are not Active (Accepted but not yet
// acknowledged, removed, unknown) do not count, and a member counts once.
export function resolve(proposal, proposerId, votes) {
  const active = new Set();
  ccf.kv[MAPS.membersInfo].forEach((v, id) => {
    if (JSON.parse(v).status === "Active") active.add(id);
  });
  const counted = new Set();
  let yes = 0;
  let no = 0;
  for (const v of votes) {
    if (!active.has(v.member_id) || counted.has(v.member_id)) continue;
    counted.add(v.member_id);
    if (v.vote === true) yes++;
    else if (v.vote === false) no++;
  }
  if (2 * yes > active.size) return "Accepted";
  if (2 * no > active.size) return "Rejected";
  return "Open";
}
