package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// natTable is the nftables table (family ip) holding the node-wide
// masquerade rules, one chain per bridge.
const natTable = "rafter-nat"

// multicast is never masqueraded, as the bridge plugin's ipMasq does.
var multicast = netip.MustParsePrefix("224.0.0.0/4")

// masqChain names the bridge's chain in natTable. A bridge name is unique in
// a netns, so two pod networks sharing a host netns (a test beside the node
// agent) never touch each other's chain.
func (c Config) masqChain() string { return "masq-" + c.Bridge }

// masqComment tags the rule with everything that shapes it, so a rule made
// for another PodCIDR (or by an older version) does not pass for ours.
func (c Config) masqComment() string {
	return fmt.Sprintf("rafter: masquerade %s to outside it, v1", c.PodCIDR)
}

func (c Config) natObjects() (*nftables.Table, *nftables.Chain) {
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTable}
	return table, &nftables.Chain{
		Name:     c.masqChain(),
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	}
}

// ensureNodeRules makes sure the host netns holds the node-wide masquerade
// rule, in the text of `nft list`:
//
//	table ip rafter-nat {
//		chain masq-<Bridge> {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr <PodCIDR> ip daddr != <PodCIDR> ip daddr != 224.0.0.0/4 masquerade comment "..."
//		}
//	}
//
// It replaces the bridge plugin's per-pod ipMasq rules (which ran `nft` on
// every ADD and DEL) with one rule per node. Add calls it before attaching a
// pod, so a pod's first connection is already NATed, and it puts the rule
// back if something flushed it.
//
// It must run on a thread in the host netns (inNetns). It reads the chain
// and returns when the rule is there, alone. Otherwise it writes table,
// chain, chain flush and rule in one nftables transaction, which the kernel
// applies atomically, so concurrent callers (in this process or another)
// still leave exactly one rule.
func (c Config) ensureNodeRules() error {
	table, chain := c.natObjects()
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("node masquerade rule: %w", err)
	}
	// A missing table or chain is an error here; any error means "write it".
	rules, lerr := conn.GetRules(table, chain)
	if lerr == nil && len(rules) == 1 {
		if got, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment); got == c.masqComment() {
			return nil
		}
	}
	conn.AddTable(table)
	conn.AddChain(chain)
	conn.FlushChain(chain)
	conn.AddRule(&nftables.Rule{
		Table:    table,
		Chain:    chain,
		Exprs:    c.masqExprs(),
		UserData: userdata.AppendString(nil, userdata.TypeComment, c.masqComment()),
	})
	if err := conn.Flush(); err != nil {
		if lerr != nil {
			err = errors.Join(err, fmt.Errorf("read it first: %w", lerr))
		}
		return fmt.Errorf("install node masquerade rule in table ip %s: %w", natTable, err)
	}
	return nil
}

// masqExprs is `ip saddr PodCIDR ip daddr != PodCIDR ip daddr != 224.0.0.0/4
// masquerade`.
func (c Config) masqExprs() []expr.Any {
	const saddr, daddr = 12, 16 // offsets in the IPv4 header
	var out []expr.Any
	match := func(offset uint32, p netip.Prefix, op expr.CmpOp) {
		out = append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
		)
	}
	match(saddr, c.PodCIDR, expr.CmpOpEq)
	match(daddr, c.PodCIDR, expr.CmpOpNeq)
	match(daddr, multicast, expr.CmpOpNeq)
	return append(out, &expr.Masq{})
}

// RemoveNodeRules removes the node-wide masquerade rule that Add installs:
// the bridge's chain in table ip rafter-nat of the host netns. The table
// stays, as portmap's does: deleting it would delete the chains another
// pod network may be adding to it at that moment. Attached pods lose their
// outbound NAT, so it is for tests and for taking the node's pod network
// down, after every pod is deleted. It is idempotent. It must not run
// concurrently with Add.
func (n *Network) RemoveNodeRules() error {
	err := inNetns(n.cfg.HostNetns, func() error {
		_, chain := n.cfg.natObjects()
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name == natTable && ch.Name == chain.Name {
				conn.DelChain(chain)
			}
		}
		return conn.Flush()
	})
	if err != nil {
		return fmt.Errorf("remove node masquerade rule: %w", err)
	}
	return nil
}
