package crdt

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/mapcrdt/mapcrdt/hlc"
)

// simNet is an in-memory network that drops, duplicates, delays and reorders messages.
type simNet struct {
	rng   *rand.Rand
	queue []simMsg
	lossy bool
}

type simMsg struct {
	to  int
	msg []byte
}

func (n *simNet) send(to int, msg []byte) {
	if n.lossy && n.rng.IntN(10) == 0 {
		return // dropped
	}
	n.queue = append(n.queue, simMsg{to, msg})
	if n.lossy && n.rng.IntN(10) == 0 {
		n.queue = append(n.queue, simMsg{to, msg}) // duplicated
	}
}

// pop takes a random queued message (delay and reorder).
func (n *simNet) pop() (simMsg, bool) {
	if len(n.queue) == 0 {
		return simMsg{}, false
	}
	i := n.rng.IntN(len(n.queue))
	m := n.queue[i]
	n.queue = append(n.queue[:i], n.queue[i+1:]...)
	return m, true
}

type simPeer struct {
	r      *Replica
	online bool
	joined bool
}

type sim struct {
	t     *testing.T
	seed  int
	rng   *rand.Rand
	wall  *hlc.ManualClock
	net   *simNet
	peers []*simPeer
	or    *oracle
	ids   map[string]int
}

func (s *sim) broadcast(from int, msg []byte) {
	for j, p := range s.peers {
		if j != from && p.joined {
			s.net.send(j, msg)
		}
	}
}

// route sends replies: PeerMessages to their recipient.
func (s *sim) route(msgs [][]byte) {
	for _, m := range msgs {
		ms, err := parseObject(string(m), 64)
		if err != nil {
			s.t.Fatalf("seed %d: reply is not JSON: %v", s.seed, err)
		}
		to, _ := stringValue(field(ms, "recipient"))
		if j, ok := s.ids[to]; ok {
			s.net.send(j, m)
		}
	}
}

func (s *sim) flush(i int) {
	p := s.peers[i]
	if !p.online {
		return
	}
	for _, m := range p.r.Flush() {
		s.or.add(m)
		s.broadcast(i, m)
	}
}

func (s *sim) deliver() bool {
	m, ok := s.net.pop()
	if !ok {
		return false
	}
	p := s.peers[m.to]
	if !p.online || !p.joined {
		return true // lost: nobody listening
	}
	res, err := p.r.Receive(m.msg)
	if err != nil {
		s.t.Fatalf("seed %d: peer %d: receive %s: %v", s.seed, m.to, m.msg, err)
	}
	s.route(res.Replies)
	return true
}

func (s *sim) syncWithRandom(i int) {
	j := s.rng.IntN(len(s.peers) - 1)
	if j >= i {
		j++
	}
	if !s.peers[j].joined {
		return
	}
	s.route([][]byte{s.peers[i].r.SyncRequest(s.peers[j].r.PeerID())})
}

// TestSyncSimulation: five replicas over a lossy network; replicas go offline, keep editing,
// come back and sync with a random peer; some join late and empty; compaction and restarts
// from snapshots happen at random. Once the network is quiet and every replica has synced,
// every dump equals the replay of every operation ever sent.
func TestSyncSimulation(t *testing.T) {
	n := *seeds / 2
	for seed := 0; seed < n; seed++ {
		runSim(t, seed)
	}
}

func runSim(t *testing.T, seed int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 99))
	s := &sim{t: t, seed: seed, rng: rng, wall: hlc.NewManualClock(1_700_000_000_000),
		net: &simNet{rng: rng, lossy: true}, or: newOracle(t), ids: map[string]int{}}
	// Odd seeds page every sync response at one to three operations.
	page := 0
	if seed%2 == 1 {
		page = 1 + seed/2%3
	}
	for i := 0; i < 5; i++ {
		r, err := NewReplica(Options{PeerID: "peer" + strconv.Itoa(i), Wall: s.wall, SyncPage: page})
		if err != nil {
			t.Fatal(err)
		}
		s.peers = append(s.peers, &simPeer{r: r, online: true, joined: i < 3 || rng.IntN(2) == 0})
		s.ids[r.PeerID()] = i
	}
	for step := 0; step < 120; step++ {
		s.wall.Advance(int64(rng.IntN(5)) - 1)
		i := rng.IntN(len(s.peers))
		p := s.peers[i]
		switch k := rng.IntN(20); {
		case !p.joined:
			if k < 2 {
				p.joined = true
				s.syncWithRandom(i)
			}
		case k < 7:
			randomEdit(t, rng, p.r)
		case k < 9:
			s.flush(i)
		case k < 14:
			s.deliver()
		case k == 14:
			p.online = !p.online
			if p.online {
				s.flush(i)
				s.syncWithRandom(i)
			}
		case k == 15:
			p.r.Compact()
		case k == 16:
			snap, err := p.r.Snapshot()
			if err != nil {
				t.Fatalf("seed %d: snapshot: %v", seed, err)
			}
			r2, err := NewReplicaFromSnapshot(Options{Wall: s.wall, SyncPage: page}, snap)
			if err != nil {
				t.Fatalf("seed %d: restore: %v", seed, err)
			}
			p.r = r2
		case k == 17:
			if p.r.CanUndo() {
				if _, err := p.r.Undo(); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if p.online {
				s.syncWithRandom(i)
			}
		}
	}
	// Quiet: everyone online and joined, no more loss; flush, then sync rounds.
	s.net.lossy = false
	for i, p := range s.peers {
		p.online, p.joined = true, true
		s.flush(i)
	}
	want := s.or.state()
	for round := 0; ; round++ {
		for s.deliver() {
		}
		for i := range s.peers {
			s.syncWithRandom(i)
			for s.deliver() {
			}
		}
		same := true
		for _, p := range s.peers {
			if norm(t, p.r.State()) != want {
				same = false
			}
		}
		if same {
			break
		}
		if round == 30 {
			for i, p := range s.peers {
				t.Logf("peer %d: %s", i, norm(t, p.r.State()))
			}
			t.Fatalf("seed %d: no convergence to the replay after 30 sync rounds\nwant %s", seed, want)
		}
	}
}
