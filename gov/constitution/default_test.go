package constitution

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dop251/goja"

	"github.com/cocoledger/coco/kv"
)

// TestDefaultMapsMatchGo: js/maps.js spells the maps as maps.go does.
func TestDefaultMapsMatchGo(t *testing.T) {
	src, err := jsFiles.ReadFile("js/maps.js")
	if err != nil {
		t.Fatal(err)
	}
	vm := goja.New()
	v, err := vm.RunString(string(src) + "\n;[MAPS, SERVICE_KEY, CONSTITUTION_KEY, MEASUREMENT_ALLOWED]")
	if err != nil {
		t.Fatal(err)
	}
	got := v.Export().([]any)
	maps := got[0].(map[string]any)
	want := map[string]string{
		"membersCerts": MembersCerts, "membersInfo": MembersInfo,
		"membersEncryptionPublicKeys": MembersEncryptionPublicKeys,
		"usersCerts":                  UsersCerts, "usersInfo": UsersInfo, "nodesInfo": NodesInfo,
		"nodesMeasurements": NodesMeasurements, "serviceInfo": ServiceInfo,
		"serviceConfig": ServiceConfig, "constitution": ConstitutionMap,
	}
	if len(maps) != len(want) {
		t.Fatalf("maps.js has %d maps, maps.go %d", len(maps), len(want))
	}
	for k, w := range want {
		if maps[k] != w {
			t.Errorf("MAPS.%s = %v, want %q", k, maps[k], w)
		}
		if !strings.HasPrefix(w, GovMapPrefix) {
			t.Errorf("%s is not under %s, so apply could not write it", w, GovMapPrefix)
		}
	}
	if got[1] != ServiceKey || got[2] != ConstitutionKey || got[3] != MeasurementAllowed {
		t.Errorf("keys = %v", got[1:])
	}
}

func TestDefaultValidate(t *testing.T) {
	c := defaultConstitution(t)
	cert, _ := newCert(t, "someone")
	encKey := newEncKeyPEM(t)
	id := hexID("a")
	meas := strings.Repeat("ab", 48)
	type args = map[string]any

	tests := []struct {
		action string
		good   []any // args values (nil: no args field)
		bad    []any
	}{
		{"set_member",
			[]any{args{"cert": cert}, args{"cert": cert, "encryption_pub_key": encKey, "member_data": args{"role": "x"}}, args{"cert": cert, "member_data": nil}},
			[]any{nil, args{}, args{"cert": "not a cert"}, args{"cert": 1}, args{"cert": cert, "encryption_pub_key": cert}, args{"cert": cert, "extra": 1}, []any{cert}}},
		{"remove_member", []any{args{"member_id": id}},
			[]any{nil, args{}, args{"member_id": "abc"}, args{"member_id": strings.ToUpper(id)}, args{"member_id": 7}}},
		{"set_member_data", []any{args{"member_id": id, "member_data": args{"a": 1}}, args{"member_id": id, "member_data": nil}},
			[]any{args{"member_id": id}, args{"member_data": 1}, args{"member_id": "x", "member_data": 1}}},
		{"set_user", []any{args{"cert": cert}, args{"cert": cert, "user_data": "anything"}},
			[]any{nil, args{"cert": cert + "trailing"}, args{"cert": ""}, args{"user_data": 1}, args{"cert": cert, "user_id": id}}},
		{"remove_user", []any{args{"user_id": id}},
			[]any{nil, args{"user_id": ""}, args{"member_id": id}}},
		{"set_user_data", []any{args{"user_id": id, "user_data": []any{1, 2}}},
			[]any{args{"user_id": id}, args{"user_id": "zz", "user_data": 1}}},
		{"transition_service_to_open", []any{nil, args{}},
			[]any{args{"status": "Open"}, "x"}},
		{"transition_node_to_trusted", []any{args{"node_id": id}},
			[]any{nil, args{"node_id": 1}, args{"node_id": id[:62]}}},
		{"remove_node", []any{args{"node_id": id}},
			[]any{args{}, args{"node_id": nil}}},
		{"set_constitution", []any{args{"constitution": Default()}},
			[]any{args{}, args{"constitution": ""}, args{"constitution": 1},
				args{"constitution": "export function validate() {}"},
				args{"constitution": "export function validate( {"}}},
		{"set_recovery_threshold", []any{args{"recovery_threshold": 1}, args{"recovery_threshold": 255}},
			[]any{args{"recovery_threshold": 0}, args{"recovery_threshold": 256}, args{"recovery_threshold": 1.5}, args{"recovery_threshold": "2"}, args{}}},
		{"set_node_measurement", []any{args{"measurement": meas}, args{"measurement": strings.Repeat("0", 64)}},
			[]any{args{"measurement": "xyz"}, args{"measurement": strings.ToUpper(meas)}, args{"measurement": "abc"}, args{"measurement": strings.Repeat("0", 130)}, args{}}},
		{"remove_node_measurement", []any{args{"measurement": meas}},
			[]any{args{"measurement": 5}}},
	}
	for _, tt := range tests {
		for i, a := range tt.good {
			t.Run(fmt.Sprintf("%s/good%d", tt.action, i), func(t *testing.T) {
				p := proposal(t, action{Name: tt.action, Args: a})
				ok, desc, err := c.Validate(t.Context(), p)
				if err != nil || !ok {
					t.Fatalf("Validate(%s) = %v %q %v, want valid", p, ok, desc, err)
				}
			})
		}
		for i, a := range tt.bad {
			t.Run(fmt.Sprintf("%s/bad%d", tt.action, i), func(t *testing.T) {
				p := proposal(t, action{Name: tt.action, Args: a})
				if a == nil {
					p = fmt.Sprintf(`{"actions":[{"name":%q}]}`, tt.action)
				}
				ok, desc, err := c.Validate(t.Context(), p)
				if err != nil || ok {
					t.Fatalf("Validate(%.200s) = %v %q %v, want invalid", p, ok, desc, err)
				}
				if !strings.Contains(desc, tt.action) {
					t.Fatalf("description %q does not name the action", desc)
				}
				t.Log(desc)
			})
		}
	}
	for _, p := range []string{
		"", "not json", "[]", `{}`, `{"actions":[]}`, `{"actions":{}}`, `{"actions":[1]}`,
		`{"actions":[{"name":"no_such_action"}]}`, `{"actions":[{"name":"transition_service_to_open","extra":1}]}`,
		`{"actions":[{"name":"transition_service_to_open"}],"other":1}`,
		`{"actions":[{"name":"transition_service_to_open"},{"name":"remove_user","args":{}}]}`,
	} {
		ok, desc, err := c.Validate(t.Context(), p)
		if err != nil || ok {
			t.Errorf("Validate(%q) = %v %q %v, want invalid", p, ok, desc, err)
		}
	}
}

func TestDefaultResolve(t *testing.T) {
	c := defaultConstitution(t)
	prop := proposal(t, action{Name: "transition_service_to_open"})
	tests := []struct {
		name    string
		active  int
		votes   string // one letter per active member: y, n or . (no ballot)
		outside string // votes from non-active members: y or n each
		want    string
	}{
		{"1 yes", 1, "y", "", StateAccepted},
		{"1 no", 1, "n", "", StateRejected},
		{"1 none", 1, ".", "", StateOpen},
		{"3 two yes", 3, "yy.", "", StateAccepted},
		{"3 one yes", 3, "y..", "", StateOpen},
		{"3 one yes one no", 3, "yn.", "", StateOpen},
		{"3 two no", 3, "nny", "", StateRejected},
		{"3 all yes", 3, "yyy", "", StateAccepted},
		{"3 one yes, outsiders yes", 3, "y..", "yyyy", StateOpen},
		{"5 two yes", 5, "yy...", "", StateOpen},
		{"5 three yes", 5, "yyynn", "", StateAccepted},
		{"5 two yes two no", 5, "yynn.", "", StateOpen},
		{"5 three no", 5, "nnn.y", "", StateRejected},
		{"5 none", 5, ".....", "", StateOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := kv.NewStore()
			tx := store.Begin()
			ids := addMembers(t, tx, tt.active, MemberActive)
			// Accepted (not yet Active) members do not count.
			pending := hexID("f")
			putJSON(t, tx, MembersInfo, pending, map[string]any{"status": MemberAccepted})
			var votes []Vote
			for i, v := range tt.votes {
				if v != '.' {
					votes = append(votes, Vote{MemberID: ids[i], Vote: v == 'y'})
				}
			}
			for i, v := range tt.outside {
				id := pending
				if i > 0 {
					id = fmt.Sprintf("unknown%d", i)
				}
				votes = append(votes, Vote{MemberID: id, Vote: v == 'y'})
			}
			rtx := commit(t, store, tx)
			got, err := c.Resolve(t.Context(), prop, ids[0], votes, rtx)
			if err != nil || got != tt.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
			if rtx.HasWrites() {
				t.Fatal("resolve wrote")
			}
		})
	}
	t.Run("duplicate votes count once", func(t *testing.T) {
		tx := kv.NewStore().Begin()
		ids := addMembers(t, tx, 3, MemberActive)
		votes := []Vote{{ids[0], true}, {ids[0], true}, {ids[0], true}}
		if got, err := c.Resolve(t.Context(), prop, ids[0], votes, tx); err != nil || got != StateOpen {
			t.Fatalf("Resolve = %q, %v", got, err)
		}
	})
}

// TestCustomConstitution: a unanimity constitution turns a majority that
// the default accepts into an open proposal.
func TestCustomConstitution(t *testing.T) {
	unanimous := strings.Replace(Default(), "if (2 * yes > active.size) return \"Accepted\";",
		"if (yes === active.size) return \"Accepted\";", 1)
	if unanimous == Default() {
		t.Fatal("resolve.js changed: update the test's replacement")
	}
	custom := mustParse(t, unanimous)
	def := defaultConstitution(t)
	tx := kv.NewStore().Begin()
	ids := addMembers(t, tx, 3, MemberActive)
	prop := proposal(t, action{Name: "transition_service_to_open"})
	votes := []Vote{{ids[0], true}, {ids[1], true}}
	for _, tc := range []struct {
		c     *Constitution
		votes []Vote
		want  string
	}{
		{def, votes, StateAccepted},
		{custom, votes, StateOpen},
		{custom, append(votes, Vote{ids[2], true}), StateAccepted},
	} {
		if got, err := tc.c.Resolve(t.Context(), prop, ids[0], tc.votes, tx); err != nil || got != tc.want {
			t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
		}
	}
}

func TestDefaultApply(t *testing.T) {
	ctx := t.Context()
	c := defaultConstitution(t)
	userCert, userID := newCert(t, "user")
	memberCert, memberID := newCert(t, "member")
	encKey := newEncKeyPEM(t)
	serviceCert, _ := newCert(t, "service")
	nodeID := hexID("c")
	meas := strings.Repeat("ab", 48)

	store := kv.NewStore()
	tx := store.Begin()
	apply := func(t *testing.T, a ...action) error {
		t.Helper()
		p := proposal(t, a...)
		if ok, desc, err := c.Validate(ctx, p); err != nil || !ok {
			t.Fatalf("Validate(%.200s) = %v %q %v", p, ok, desc, err)
		}
		return c.Apply(ctx, p, "proposal-id", tx)
	}
	mustApply := func(t *testing.T, a ...action) {
		t.Helper()
		if err := apply(t, a...); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	has := func(m, k string) bool { _, ok := tx.Get(m, k); return ok }
	type args = map[string]any

	t.Run("set_user then remove_user", func(t *testing.T) {
		mustApply(t, action{"set_user", args{"cert": userCert, "user_data": args{"team": "a"}}})
		if v, _ := tx.Get(UsersCerts, userID); string(v) != userCert {
			t.Fatalf("users.certs[%s] = %q", userID, v)
		}
		if got := getJSON(t, tx, UsersInfo, userID); fmt.Sprint(got) != "map[user_data:map[team:a]]" {
			t.Fatalf("users.info = %v", got)
		}
		mustApply(t, action{"set_user_data", args{"user_id": userID, "user_data": 42}})
		if got := getJSON(t, tx, UsersInfo, userID); got["user_data"] != 42.0 {
			t.Fatalf("users.info = %v", got)
		}
		mustApply(t, action{"remove_user", args{"user_id": userID}})
		if has(UsersCerts, userID) || has(UsersInfo, userID) {
			t.Fatal("user still present")
		}
		if err := apply(t, action{"remove_user", args{"user_id": userID}}); !errors.Is(err, ErrScript) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("removing an absent user: %v", err)
		}
		if err := apply(t, action{"set_user_data", args{"user_id": userID, "user_data": 1}}); err == nil {
			t.Fatal("set_user_data of an absent user succeeded")
		}
	})

	t.Run("members", func(t *testing.T) {
		addMembers(t, tx, 1, MemberActive) // someone to keep governance alive
		mustApply(t, action{"set_member", args{"cert": memberCert, "encryption_pub_key": encKey, "member_data": args{"name": "m"}}})
		if v, _ := tx.Get(MembersCerts, memberID); string(v) != memberCert {
			t.Fatalf("members.certs = %q", v)
		}
		info := getJSON(t, tx, MembersInfo, memberID)
		if info["status"] != MemberAccepted || fmt.Sprint(info["member_data"]) != "map[name:m]" {
			t.Fatalf("members.info = %v", info)
		}
		if v, _ := tx.Get(MembersEncryptionPublicKeys, memberID); string(v) != encKey {
			t.Fatal("encryption key not stored")
		}
		// Re-setting an Active member does not demote it.
		putJSON(t, tx, MembersInfo, memberID, args{"status": MemberActive, "member_data": args{"name": "m"}})
		mustApply(t, action{"set_member", args{"cert": memberCert}})
		if getJSON(t, tx, MembersInfo, memberID)["status"] != MemberActive {
			t.Fatal("set_member demoted an Active member")
		}
		mustApply(t, action{"set_member_data", args{"member_id": memberID, "member_data": "new"}})
		if info := getJSON(t, tx, MembersInfo, memberID); info["member_data"] != "new" || info["status"] != MemberActive {
			t.Fatalf("members.info = %v", info)
		}
		mustApply(t, action{"set_recovery_threshold", args{"recovery_threshold": 1}})
		if got := getJSON(t, tx, ServiceConfig, ServiceKey); got["recovery_threshold"] != 1.0 {
			t.Fatalf("service.config = %v", got)
		}
		if err := apply(t, action{"set_recovery_threshold", args{"recovery_threshold": 2}}); err == nil ||
			!strings.Contains(err.Error(), "recovery members") {
			t.Fatalf("threshold above recovery members: %v", err)
		}
		// memberID is the only recovery member and the threshold is 1: as
		// in CCF, it cannot be removed.
		if err := apply(t, action{"remove_member", args{"member_id": memberID}}); !errors.Is(err, ErrScript) ||
			!strings.Contains(err.Error(), "recovery threshold") {
			t.Fatalf("removing the last recovery member: %v", err)
		}
		if !has(MembersCerts, memberID) || !has(MembersEncryptionPublicKeys, memberID) {
			t.Fatal("a refused remove_member changed the kv")
		}
		// A member holding a key but not Active is not a recovery member.
		cert2, id2 := newCert(t, "m2")
		mustApply(t, action{"set_member", args{"cert": cert2, "encryption_pub_key": newEncKeyPEM(t)}})
		if err := apply(t, action{"set_recovery_threshold", args{"recovery_threshold": 2}}); err == nil ||
			!strings.Contains(err.Error(), "1 recovery members") {
			t.Fatalf("threshold counting an Accepted member: %v", err)
		}
		if err := apply(t, action{"remove_member", args{"member_id": memberID}}); err == nil {
			t.Fatal("removed the last Active recovery member while an Accepted one holds a key")
		}
		// Once it is Active, there are two, and one may go.
		putJSON(t, tx, MembersInfo, id2, args{"status": MemberActive})
		mustApply(t, action{"remove_member", args{"member_id": memberID}})
		if has(MembersCerts, memberID) || has(MembersInfo, memberID) || has(MembersEncryptionPublicKeys, memberID) {
			t.Fatal("member still present")
		}
		// A member without a key may always go (while others are Active).
		cert3, id3 := newCert(t, "m3")
		mustApply(t, action{"set_member", args{"cert": cert3}})
		putJSON(t, tx, MembersInfo, id3, args{"status": MemberActive})
		mustApply(t, action{"remove_member", args{"member_id": id3}})
	})

	t.Run("last active member cannot be removed", func(t *testing.T) {
		tx2 := kv.NewStore().Begin()
		ids := addMembers(t, tx2, 1, MemberActive)
		p := proposal(t, action{"remove_member", args{"member_id": ids[0]}})
		if err := c.Apply(ctx, p, "p", tx2); err == nil || !strings.Contains(err.Error(), "last active member") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("transition_service_to_open keeps the cert", func(t *testing.T) {
		putJSON(t, tx, ServiceInfo, ServiceKey, args{"status": "Opening", "cert": serviceCert, "recovery_count": 2, "created_at": "1.1"})
		mustApply(t, action{Name: "transition_service_to_open"})
		got := getJSON(t, tx, ServiceInfo, ServiceKey)
		if got["status"] != "Open" || got["cert"] != serviceCert || got["recovery_count"] != 2.0 || got["created_at"] != "1.1" {
			t.Fatalf("service.info = %v", got)
		}
		if err := apply(t, action{Name: "transition_service_to_open"}); err == nil || !strings.Contains(err.Error(), "from status Open") {
			t.Fatalf("opening an open service: %v", err)
		}
	})

	t.Run("nodes", func(t *testing.T) {
		putJSON(t, tx, NodesInfo, nodeID, args{"node_id": nodeID, "status": "Pending", "raft_id": 2, "rpc_address": "127.0.0.1:1"})
		mustApply(t, action{"transition_node_to_trusted", args{"node_id": nodeID}})
		got := getJSON(t, tx, NodesInfo, nodeID)
		if got["status"] != "Trusted" || got["rpc_address"] != "127.0.0.1:1" || got["raft_id"] != 2.0 {
			t.Fatalf("nodes.info = %v", got)
		}
		mustApply(t, action{"remove_node", args{"node_id": nodeID}})
		if got := getJSON(t, tx, NodesInfo, nodeID); got["status"] != "Retired" {
			t.Fatalf("removed trusted node: %v", got)
		}
		if err := apply(t, action{"transition_node_to_trusted", args{"node_id": nodeID}}); err == nil {
			t.Fatal("trusted a retired node")
		}
		pending := hexID("d")
		putJSON(t, tx, NodesInfo, pending, args{"status": "Pending"})
		mustApply(t, action{"remove_node", args{"node_id": pending}})
		if has(NodesInfo, pending) {
			t.Fatal("removed pending node still present")
		}
		if err := apply(t, action{"remove_node", args{"node_id": hexID("e")}}); err == nil {
			t.Fatal("removed an unknown node")
		}
	})

	t.Run("set_constitution", func(t *testing.T) {
		src := Default() + "\n// amended\n"
		mustApply(t, action{"set_constitution", args{"constitution": src}})
		if v, _ := tx.Get(ConstitutionMap, ConstitutionKey); string(v) != src {
			t.Fatal("constitution not stored")
		}
	})

	t.Run("measurements", func(t *testing.T) {
		mustApply(t, action{"set_node_measurement", args{"measurement": meas}})
		if v, _ := tx.Get(NodesMeasurements, meas); string(v) != MeasurementAllowed {
			t.Fatalf("measurement = %q", v)
		}
		mustApply(t, action{"remove_node_measurement", args{"measurement": meas}})
		if has(NodesMeasurements, meas) {
			t.Fatal("measurement still present")
		}
		if err := apply(t, action{"remove_node_measurement", args{"measurement": meas}}); err == nil {
			t.Fatal("removed an absent measurement")
		}
	})

	t.Run("a failing action undoes the whole proposal", func(t *testing.T) {
		fresh := store.Begin()
		p := proposal(t, action{"set_user", args{"cert": userCert}}, action{"remove_user", args{"user_id": hexID("9")}})
		if err := c.Apply(ctx, p, "p", fresh); err == nil {
			t.Fatal("apply succeeded")
		}
		if fresh.HasWrites() {
			t.Fatal("the first action's writes reached the tx")
		}
	})

	t.Run("the written tx commits", func(t *testing.T) {
		if err := store.Validate(tx); err != nil {
			t.Fatal(err)
		}
		if err := store.Apply(store.Version()+1, tx.WriteSet()); err != nil {
			t.Fatal(err)
		}
	})
}
