package crdt

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
	"github.com/tidwall/gjson"
)

// TestREADMENamesEverySyncMember: README "Protocol" lists the members of a
// ListOperationsRequest and a ListOperationsResponse (`ListOperationsRequest {vector, …}`).
// Every member the engine writes in an exchange — paged, pushed back, a probe, a uMap
// Journal's plain request — is in its verb's list, and every member listed is one the
// engine writes (but withheld, which needs an operation over a limit). A member added to
// the wire and not to the README, or one the README still names after it left, fails here.
func TestREADMENamesEverySyncMember(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	listed := map[string][]string{}
	for _, verb := range []string{"ListOperationsRequest", "ListOperationsResponse"} {
		m := regexp.MustCompile("`" + verb + ` \{([^}]*)\}` + "`").FindStringSubmatch(readme)
		if m == nil {
			t.Fatalf("README.md has no `%s {…}`", verb)
		}
		for _, part := range regexp.MustCompile(`[,|]`).Split(m[1], -1) {
			listed[verb] = append(listed[verb], strings.TrimSuffix(strings.TrimSpace(part), "?"))
		}
	}

	wall := hlc.NewManualClock(kitT0)
	alice := kitReplica(t, "alice", wall, kitPaged(2))
	bob := kitReplica(t, "bob", wall, kitPaged(2))
	umap := kitReplica(t, "umapjs", wall)
	for i := range 5 {
		wall.Advance(5)
		kitSet(t, alice, `{"id":"a`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", `"a"`)
		kitSet(t, bob, `{"id":"b`+strconv.Itoa(i)+`","layerId":"L1"}`, "properties.name", `"b"`)
	}
	alice.Flush()
	sent := bob.Flush()
	kitDeliver(t, sent, umap)

	seen := map[string]map[string]bool{}
	queue := [][]byte{
		alice.SyncRequest("bob"), // paged both ways: more, after, a push-back
		bob.ProbeRequest("alice"),
		// uMap's Journal asks with a clock and no vector, and gets the plain form.
		[]byte(`{"kind":"PeerMessage","sender":"umapjs","recipient":"bob","message":{"verb":"ListOperationsRequest","lastKnownHLC":` +
			strconv.Quote(kitMsgHLC(t, sent[1]).String()) + `}}`),
	}
	reps := []*Replica{alice, bob}
	for n := 0; len(queue) > 0; n++ {
		if n > 200 {
			t.Fatal("the exchange does not end")
		}
		m := queue[0]
		queue = queue[1:]
		msg := gjson.GetBytes(m, "message")
		verb := msg.Get("verb").String()
		if seen[verb] == nil {
			seen[verb] = map[string]bool{}
		}
		msg.ForEach(func(k, _ gjson.Result) bool {
			if k.String() != "verb" {
				seen[verb][k.String()] = true
			}
			return true
		})
		to := gjson.GetBytes(m, "recipient").String()
		if to == "umapjs" {
			continue
		}
		i := slices.IndexFunc(reps, func(r *Replica) bool { return r.PeerID() == to })
		if i < 0 {
			t.Fatalf("message to %q: %s", to, m)
		}
		queue = append(queue, kitRecv(t, reps[i], m).Replies...)
	}

	for verb, names := range listed {
		for name := range seen[verb] {
			if !slices.Contains(names, name) {
				t.Errorf("the engine writes %s.%s, which README.md's `%s {…}` does not list", verb, name, verb)
			}
		}
		for _, name := range names {
			if name != "withheld" && !seen[verb][name] {
				t.Errorf("README.md lists %s.%s, which no message of the exchange holds", verb, name)
			}
		}
	}
}

// TestREADMELayoutNamesFiles: every file or folder README "Layout" names in a row
// (`state.go`, `jumps/`, `merge-worker.js` …) is in that row's folder or below it: a file
// renamed or removed without the README fails here.
func TestREADMELayoutNamesFiles(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z]+)/` \\| (.*) \\|$").FindAllStringSubmatch(string(b), -1)
	if len(rows) < 5 {
		t.Fatalf("README.md's Layout has %d rows", len(rows))
	}
	name := regexp.MustCompile("`([A-Za-z][\\w.-]*(?:\\.(?:go|js|ts|md|sh)|/))`")
	for _, row := range rows {
		dir := "../" + row[1]
		held := map[string]bool{}
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "node_modules" {
					return filepath.SkipDir
				}
				held[d.Name()+"/"] = true
			} else {
				held[d.Name()] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllStringSubmatch(row[2], -1) {
			if !held[m[1]] {
				t.Errorf("README.md's Layout names %s under %s/, which holds no such file", m[1], row[1])
			}
		}
	}
}
