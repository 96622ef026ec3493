package netns

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the nftables table (family ip) every peer namespace gets. Its
// base chain "input" (filter hook, priority 0, policy accept) holds one rule
// per peer the namespace is cut off from: `ip saddr <peer> drop`. Inspect it
// with `ip netns exec <ns> nft list table ip jepsen` where nft is installed.
const TableName = "jepsen"

// applyDrops makes the input chain of the namespace at path drop packets from
// exactly the addresses in from, in one transaction: the table and chain are
// created if missing, the chain is flushed and refilled.
func applyDrops(path string, from []netip.Addr) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name:     "input",
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &accept,
	})
	c.FlushChain(ch)
	for _, a := range from {
		ip := a.As4()
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			// ip saddr: 4 bytes at offset 12 of the IPv4 header.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install rules: %w", err)
	}
	return nil
}
