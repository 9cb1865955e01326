package constitution_test

import (
	"testing"

	"github.com/cocoledger/coco/gov"
	"github.com/cocoledger/coco/gov/constitution"
)

// The maps both packages name must agree. This is an external test so that
// gov may import constitution without an import cycle.
func TestMapsMatchGov(t *testing.T) {
	for _, p := range [][2]string{
		{constitution.UsersCerts, gov.UsersCerts},
		{constitution.UsersInfo, gov.UsersInfo},
		{constitution.NodesInfo, gov.NodesInfo},
		{constitution.ServiceInfo, gov.ServiceInfo},
		{constitution.ServiceKey, gov.ServiceKey},
		{constitution.StateOpen, gov.StatusOpen},
	} {
		if p[0] != p[1] {
			t.Errorf("constitution has %q, gov has %q", p[0], p[1])
		}
	}
}
