// CoreDNS with the plugins a single-node test cluster's DNS needs, and no others: the full build
// carries the cloud providers' SDKs and takes several times as long to compile. Plugins register
// themselves when imported; the Corefile in scripts/cluster/coredns.yaml uses only these.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
