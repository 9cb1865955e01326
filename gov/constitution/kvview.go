package constitution

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// KV is the transactional key-value API a constitution reads and writes
// through. *kv.Tx satisfies it.
type KV interface {
	Get(mapName, key string) ([]byte, bool)
	Put(mapName, key string, value []byte) error
	Delete(mapName, key string) error
	Range(mapName string, fn func(key string, value []byte) bool)
}

// Map-name policy. Reads reach any public map (governance decisions may
// depend on public state); writes reach only governance maps, so a
// constitution cannot rewrite application state or the private maps whose
// confidentiality the service promises.
const (
	publicPrefix = "public:"
	// GovMapPrefix is the prefix of every map a constitution may write.
	GovMapPrefix = "public:ccf.gov."
)

var (
	errReadOnly  = errors.New("the kv is read-only in this call")
	errNoKV      = errors.New("the kv is not available in this call")
	errAbandoned = errors.New("the call was abandoned after its timeout")
)

// kvView is what one call sees of the kv. Apply's writes are buffered here
// and reach the caller's KV only if apply returns normally, so a throwing or
// timed-out apply leaves the transaction as it was.
//
// A call runs on its own goroutine and may be abandoned (see
// Limits.HardTimeout) while the caller goes on using its transaction, which
// is single-goroutine. mu serialises the script's access to base with
// abandon, and after abandon base is never touched again.
type kvView struct {
	mu        sync.Mutex
	base      KV // nil: no kv in this call
	writable  bool
	abandoned bool

	writes   map[string]map[string]*string // map -> key -> value (nil: deleted)
	written  int                           // bytes of keys and values written
	maxWrite int
	limitErr error // sticky: set once MaxWriteBytes is hit, even if JS catches it
}

func newKVView(base KV, writable bool, maxWrite int) *kvView {
	return &kvView{base: base, writable: writable, maxWrite: maxWrite, writes: make(map[string]map[string]*string)}
}

// access checks that mapName may be used and that the kv is still there.
// Called with mu held.
func (v *kvView) access(mapName string, write bool) error {
	switch {
	case v.abandoned:
		return errAbandoned
	case v.base == nil:
		return errNoKV
	case !strings.HasPrefix(mapName, publicPrefix):
		return fmt.Errorf("map %q is not public: a constitution only sees public maps", mapName)
	case write && !v.writable:
		return errReadOnly
	case write && !strings.HasPrefix(mapName, GovMapPrefix):
		return fmt.Errorf("map %q is not a governance map (%s*): a constitution may not write it", mapName, GovMapPrefix)
	}
	return nil
}

func (v *kvView) get(mapName, key string) (string, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.access(mapName, false); err != nil {
		return "", false, err
	}
	if w, ok := v.writes[mapName][key]; ok {
		if w == nil {
			return "", false, nil
		}
		return *w, true, nil
	}
	b, ok := v.base.Get(mapName, key)
	return string(b), ok, nil
}

func (v *kvView) put(mapName, key string, value *string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.access(mapName, true); err != nil {
		return err
	}
	if v.limitErr != nil {
		return v.limitErr
	}
	n := len(key)
	if value != nil {
		n += len(*value)
	}
	if v.written+n > v.maxWrite {
		v.limitErr = fmt.Errorf("%w: the call writes more than %d bytes to the kv", ErrTooLarge, v.maxWrite)
		return v.limitErr
	}
	v.written += n
	m := v.writes[mapName]
	if m == nil {
		m = make(map[string]*string)
		v.writes[mapName] = m
	}
	m[key] = value
	return nil
}

// writeLimitErr is the error of the first write beyond MaxWriteBytes, if any.
func (v *kvView) writeLimitErr() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.limitErr
}

// entries returns mapName as the call sees it, sorted by key. It copies
// rather than streams so that the script's callback runs without mu held
// and may write to the map it iterates.
func (v *kvView) entries(mapName string) ([][2]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.access(mapName, false); err != nil {
		return nil, err
	}
	own := v.writes[mapName]
	var out [][2]string
	v.base.Range(mapName, func(k string, val []byte) bool {
		if _, shadowed := own[k]; !shadowed {
			out = append(out, [2]string{k, string(val)})
		}
		return true
	})
	for k, w := range own {
		if w != nil {
			out = append(out, [2]string{k, *w})
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out, nil
}

// abandon cuts the script off from base. When it returns, no script access
// to base is in progress or can start.
func (v *kvView) abandon() {
	v.mu.Lock()
	v.abandoned = true
	v.mu.Unlock()
}

// flush writes the buffered writes to base in map and key order (the order
// does not change the write set, but a deterministic order keeps any error
// reproducible). Called by the caller's goroutine after the script is done.
func (v *kvView) flush() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.limitErr != nil {
		return v.limitErr
	}
	maps := make([]string, 0, len(v.writes))
	for m := range v.writes {
		maps = append(maps, m)
	}
	slices.Sort(maps)
	for _, m := range maps {
		keys := make([]string, 0, len(v.writes[m]))
		for k := range v.writes[m] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var err error
			if w := v.writes[m][k]; w == nil {
				err = v.base.Delete(m, k)
			} else {
				err = v.base.Put(m, k, []byte(*w))
			}
			if err != nil {
				return fmt.Errorf("constitution: write %s[%q]: %w", m, k, err)
			}
		}
	}
	return nil
}
